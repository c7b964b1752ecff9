package io.pyscoring.model;

import io.pyscoring.scoring.ScoringOptions;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;

/**
 * The {@code WITH} options of {@code CREATE MODEL ... WITH ('provider' = 'pyscoring', ...)}.
 *
 * <p>Every option but {@code path} overrides one key of {@link ScoringOptions} for this model;
 * an option left out falls back to the job parameter of that key, then to its default.
 */
public final class ModelOptions {

    public static final ConfigOption<String> PATH =
            ConfigOptions.key("path")
                    .stringType()
                    .noDefaultValue()
                    .withDescription(
                            "Export directory, whose newest complete version is bound when the"
                                    + " query is planned, or one version folder <N>/.");

    public static final ConfigOption<Integer> MAX_BATCH_SIZE =
            ConfigOptions.key("max-batch-size")
                    .intType()
                    .noDefaultValue()
                    .withDescription("Rows in one TensorFlow call at most (scoring.max-batch-size).");

    public static final ConfigOption<Long> MAX_BATCH_DELAY_MS =
            ConfigOptions.key("max-batch-delay-ms")
                    .longType()
                    .noDefaultValue()
                    .withDescription(
                            "Milliseconds a batch stays open after its first row"
                                    + " (scoring.max-batch-delay-ms).");

    public static final ConfigOption<Integer> INTRA_OP_THREADS =
            ConfigOptions.key("intra-op-threads")
                    .intType()
                    .noDefaultValue()
                    .withDescription(
                            "Threads of one TensorFlow kernel; 0 uses every core"
                                    + " (scoring.tensorflow.intra-op-threads).");

    public static final ConfigOption<Integer> INTER_OP_THREADS =
            ConfigOptions.key("inter-op-threads")
                    .intType()
                    .noDefaultValue()
                    .withDescription(
                            "Threads that run independent TensorFlow ops; 0 lets TensorFlow"
                                    + " choose (scoring.tensorflow.inter-op-threads).");

    public static final ConfigOption<Long> MAX_MODEL_BYTES =
            ConfigOptions.key("max-model-bytes")
                    .longType()
                    .noDefaultValue()
                    .withDescription(
                            "Bytes of variables above which the model is not loaded"
                                    + " (scoring.jvm.max-model-bytes).");

    /** Each overriding option with the scorer key it sets and its minimum value. */
    private record Override(ConfigOption<? extends Number> option, ScoringOptions.Key key, long min) {}

    private static final Override[] OVERRIDES = {
        new Override(MAX_BATCH_SIZE, ScoringOptions.MAX_BATCH_SIZE, 1),
        new Override(MAX_BATCH_DELAY_MS, ScoringOptions.MAX_BATCH_DELAY_MS, 0),
        new Override(INTRA_OP_THREADS, ScoringOptions.INTRA_OP_THREADS, 0),
        new Override(INTER_OP_THREADS, ScoringOptions.INTER_OP_THREADS, 0),
        new Override(MAX_MODEL_BYTES, ScoringOptions.MAX_MODEL_BYTES, 1),
    };

    private ModelOptions() {}

    /**
     * Returns the scorer keys that the model's options set, keyed by {@link ScoringOptions} key
     * name, after checking each value against its minimum.
     */
    static Map<String, String> scoringOverrides(ReadableConfig options, String model) {
        Map<String, String> overrides = new LinkedHashMap<>();
        for (Override override : OVERRIDES) {
            Number value = options.getOptional(override.option()).orElse(null);
            if (value == null) {
                continue;
            }
            if (value.longValue() < override.min()) {
                throw new ValidationException(
                        String.format(
                                "Invalid option '%s' = '%s' of model %s: the minimum is %d",
                                override.option().key(), value, model, override.min()));
            }
            overrides.put(override.key().name(), value.toString());
        }
        return overrides;
    }
}
