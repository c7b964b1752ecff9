package io.pyscoring.scoring;

import io.pyscoring.metrics.ScoringMetrics;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.types.Row;

/**
 * The Java scorer of one Flink subtask, for callers outside this package such as the {@code
 * ML_PREDICT} model provider: the JVM's shared {@link LoadedModel}, a {@link BatchScorer} and a
 * {@link MicroBatcher}, recording into the same Prometheus registry as {@link PredictFunction}.
 *
 * <p>Output rows have the layout of {@link BatchScorer}: the signature outputs in manifest order,
 * then {@code model_version}, {@code error_code} and {@code error}. Threads are those of {@link
 * MicroBatcher}: {@link #submit} on the task thread, futures completed on the batcher thread.
 */
public final class SubtaskScorer implements AutoCloseable {

    private final LoadedModel model;
    private final BatchScorer scorer;
    private final MicroBatcher batcher;

    private SubtaskScorer(LoadedModel model, BatchScorer scorer, MicroBatcher batcher) {
        this.model = model;
        this.scorer = scorer;
        this.batcher = batcher;
    }

    /**
     * Starts the JVM's Prometheus endpoint if needed, acquires the model, warms it up and starts
     * the subtask's batcher thread.
     *
     * @param group the Flink metric group that receives the scorer's counters
     * @param threadName name of the batcher thread
     */
    public static SubtaskScorer open(
            ModelSpec spec, ScoringOptions options, MetricGroup group, String threadName) {
        ScoringMetrics.get().startServer(options);
        LoadedModel model = LoadedModel.acquire(spec, options);
        try {
            BatchScorer scorer = BatchScorer.open(model, BatchScorer.FlinkCounters.register(group));
            MicroBatcher batcher =
                    new MicroBatcher(
                            threadName,
                            spec.inputs(),
                            options.maxBatchSize,
                            options.maxBatchDelayMs * 1_000_000L,
                            System::nanoTime,
                            scorer::score);
            return new SubtaskScorer(model, scorer, batcher);
        } catch (RuntimeException e) {
            LoadedModel.release(model);
            throw e;
        }
    }

    /** The manifest of the version this scorer serves. */
    public ModelSpec spec() {
        return model.spec;
    }

    /**
     * Queues one row: {@code values} contains one value per signature input, in signature order. A
     * null value completes the row at once with error code {@code NULL_INPUT}. Blocks while every
     * batch buffer is taken.
     */
    public void submit(Object[] values, CompletableFuture<Collection<Row>> future)
            throws InterruptedException {
        List<TensorSpec> inputs = model.spec.inputs();
        for (int i = 0; i < inputs.size(); i++) {
            if (values[i] == null) {
                scorer.completeWithError(
                        future, "NULL_INPUT", "input '" + inputs.get(i).name() + "' is NULL");
                return;
            }
        }
        batcher.add(values, 0, future);
    }

    /** Scores the rows already queued, stops the batcher thread and releases the model. */
    @Override
    public void close() throws InterruptedException {
        try {
            batcher.close();
        } finally {
            LoadedModel.release(model);
        }
    }
}
