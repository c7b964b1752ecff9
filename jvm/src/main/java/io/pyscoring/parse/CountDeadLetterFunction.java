package io.pyscoring.parse;

import io.pyscoring.metrics.ScoringMetrics;
import io.pyscoring.scoring.ScoringOptions;

import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * Scalar function {@code pyscoring_count_dead_letter(model, path, reason_code, model_version)}:
 * counts one dead letter in the Prometheus counter {@code pyscoring_dead_letters_total} and
 * returns {@code reason_code} unchanged.
 *
 * <p>Deploy calls it in the query that feeds the dead-letter sink, so the counter sees every row
 * that reaches that sink, whichever stage rejected it. {@code model_version} is the version that
 * rejected the row, or NULL for a row rejected before scoring, whose {@code version} label is then
 * empty. The function is not deterministic, so the planner calls it once per row. Rows replayed
 * after a restart from a checkpoint are counted again.
 */
public final class CountDeadLetterFunction extends ScalarFunction {

    private static final long serialVersionUID = 1L;

    /** SQL name of the function in pyscoring jobs. */
    public static final String NAME = "pyscoring_count_dead_letter";

    /**
     * Starts this JVM's metrics endpoint and lists it in the job's targets file. On the PS path no
     * scorer runs in the JVM, and this function is what serves the dead-letter counts there.
     */
    @Override
    public void open(FunctionContext context) {
        ScoringOptions options =
                ScoringOptions.fromLookup(key -> context.getJobParameter(key, null));
        ScoringMetrics.get().startServer(options);
    }

    public String eval(String model, String path, String reasonCode, Long modelVersion) {
        ScoringMetrics.get()
                .deadLetters
                .labelValues(
                        model == null ? "" : model,
                        modelVersion == null ? "" : String.valueOf(modelVersion),
                        path == null ? "" : path,
                        reasonCode == null ? "" : reasonCode)
                .inc();
        return reasonCode;
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
