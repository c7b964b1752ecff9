package io.pyscoring.metrics;

import io.pyscoring.scoring.ScoringOptions;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code pyscoring_end_to_end_latency(event_time, model_name, model_version)}: records the seconds
 * from {@code event_time} to now in {@code pyscoring_end_to_end_latency_seconds} and returns
 * {@code model_version} unchanged.
 *
 * <p>Called in the projection that feeds a sink, it measures each row from its event time to the
 * moment the row is handed to the sink writer. A sink that commits at checkpoints makes the row
 * visible up to one checkpoint interval later, which this does not include. {@code event_time}
 * is BIGINT epoch milliseconds, TIMESTAMP_LTZ, or TIMESTAMP read as UTC. A NULL event time
 * records nothing.
 */
public class EndToEndLatencyFunction extends ScalarFunction {

    private static final long serialVersionUID = 1L;

    public static final String NAME = "pyscoring_end_to_end_latency";

    /** Job parameter that names the scoring path of the job, for the {@code path} label. */
    public static final String PATH_LABEL_PARAMETER = "pyscoring.path-label";

    private String pathLabel = "jvm";

    @Override
    public void open(FunctionContext context) {
        pathLabel = context.getJobParameter(PATH_LABEL_PARAMETER, "jvm");
        ScoringOptions options =
                ScoringOptions.fromLookup(key -> context.getJobParameter(key, null));
        ScoringMetrics.get().startServer(options);
    }

    public Long eval(Long eventTimeMillis, String modelName, Long modelVersion) {
        if (eventTimeMillis != null) {
            record(System.currentTimeMillis() - eventTimeMillis, modelName, modelVersion, pathLabel);
        }
        return modelVersion;
    }

    public Long eval(
            @DataTypeHint("TIMESTAMP_LTZ(9)") Instant eventTime,
            String modelName,
            Long modelVersion) {
        if (eventTime != null) {
            record(
                    System.currentTimeMillis() - eventTime.toEpochMilli(),
                    modelName,
                    modelVersion,
                    pathLabel);
        }
        return modelVersion;
    }

    public Long eval(
            @DataTypeHint("TIMESTAMP(9)") LocalDateTime eventTime,
            String modelName,
            Long modelVersion) {
        if (eventTime != null) {
            long eventMillis = eventTime.toInstant(ZoneOffset.UTC).toEpochMilli();
            record(System.currentTimeMillis() - eventMillis, modelName, modelVersion, pathLabel);
        }
        return modelVersion;
    }

    private static void record(
            long latencyMillis, String modelName, Long modelVersion, String pathLabel) {
        ScoringMetrics.get()
                .endToEndLatency
                .labelValues(modelName, String.valueOf(modelVersion), pathLabel)
                .observe(latencyMillis / 1000.0);
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
