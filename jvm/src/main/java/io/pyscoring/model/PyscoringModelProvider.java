package io.pyscoring.model;

import java.util.Map;
import org.apache.flink.table.functions.AsyncPredictFunction;
import org.apache.flink.table.ml.AsyncPredictRuntimeProvider;
import org.apache.flink.table.ml.ModelProvider;

/**
 * The runtime side of one {@code CREATE MODEL ... WITH ('provider' = 'pyscoring')}: a version
 * folder chosen at planning time and the binding of the declared columns to its signature.
 *
 * <p>Only asynchronous inference is provided, because rows are scored in micro-batches on a
 * separate thread; {@code ML_PREDICT} with {@code 'async' = 'false'} is rejected by the planner.
 */
final class PyscoringModelProvider implements AsyncPredictRuntimeProvider {

    private final String model;
    private final String versionDir;
    private final SchemaBinding binding;
    private final Map<String, String> scoringOverrides;

    PyscoringModelProvider(
            String model,
            String versionDir,
            SchemaBinding binding,
            Map<String, String> scoringOverrides) {
        this.model = model;
        this.versionDir = versionDir;
        this.binding = binding;
        this.scoringOverrides = Map.copyOf(scoringOverrides);
    }

    @Override
    public AsyncPredictFunction createAsyncPredictFunction(Context context) {
        return new ModelPredictFunction(model, versionDir, binding, scoringOverrides);
    }

    @Override
    public ModelProvider copy() {
        return new PyscoringModelProvider(model, versionDir, binding, scoringOverrides);
    }

    String versionDir() {
        return versionDir;
    }

    SchemaBinding binding() {
        return binding;
    }

    Map<String, String> scoringOverrides() {
        return scoringOverrides;
    }
}
