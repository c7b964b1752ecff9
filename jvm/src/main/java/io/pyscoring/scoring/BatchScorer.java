package io.pyscoring.scoring;

import io.pyscoring.metrics.ScoringMetrics;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.function.LongSupplier;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.tensorflow.Result;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.TString;

/**
 * Runs one batch through TensorFlow and completes each row's future with its own output row.
 *
 * <p>Output rows hold the signature outputs in manifest order, then {@code model_version},
 * {@code error_code} and {@code error}. A batch that TensorFlow rejects is split in halves until
 * the failing rows are alone; those rows get {@code error_code} {@code TF_ERROR} and the
 * TensorFlow message, and every other row is scored. A row whose future another thread completed
 * first (a timeout) keeps that result and is not counted here. Called on the batcher's thread,
 * except {@link #completeWithError}, which is thread-safe.
 */
final class BatchScorer {

    private static final Logger LOG = LoggerFactory.getLogger(BatchScorer.class);
    static final String PATH_LABEL = "jvm";

    /**
     * Flink metric-group metrics, so the web UI and Flink's reporters see the scorer. The
     * latency histogram records milliseconds per row.
     */
    record FlinkCounters(Counter predictions, Counter errors, Histogram latencyMillis) {

        /** Rows the latency histogram keeps for its statistics. */
        private static final int HISTOGRAM_WINDOW = 1000;

        /** Registers the scorer's counters and latency histogram in {@code group}. */
        static FlinkCounters register(MetricGroup group) {
            return new FlinkCounters(
                    group.counter("predictions"),
                    group.counter("predictionErrors"),
                    group.histogram(
                            "predictionLatencyMs", new DescriptiveStatisticsHistogram(HISTOGRAM_WINDOW)));
        }
    }

    private final LoadedModel model;
    private final List<TensorSpec> inputs;
    private final List<TensorSpec> outputs;
    private final LongSupplier nanoClock;
    private final FlinkCounters flinkCounters;
    private final ScoringMetrics metrics;
    private final String[] labels;
    private long loggedErrors;

    /**
     * Creates the scorer of a subtask: records {@code model} in the {@code pyscoring_model_info}
     * metric and warms it up.
     */
    static BatchScorer open(LoadedModel model, FlinkCounters flinkCounters) {
        ScoringMetrics.get()
                .modelInfo
                .addLabelValues(
                        model.spec.modelName(),
                        String.valueOf(model.spec.version()),
                        PATH_LABEL,
                        model.tensorFlowVersion);
        BatchScorer scorer = new BatchScorer(model, System::nanoTime, flinkCounters);
        scorer.warmUp();
        return scorer;
    }

    BatchScorer(LoadedModel model, LongSupplier nanoClock, FlinkCounters flinkCounters) {
        this.model = model;
        this.inputs = model.spec.inputs();
        this.outputs = model.spec.outputs();
        this.nanoClock = nanoClock;
        this.flinkCounters = flinkCounters;
        this.metrics = ScoringMetrics.get();
        this.labels =
                new String[] {
                    model.spec.modelName(), String.valueOf(model.spec.version()), PATH_LABEL
                };
    }

    /** Number of fields of an output row. */
    int outputArity() {
        return outputs.size() + 3;
    }

    /**
     * Scores the rows of {@code batch} that have no result yet, so that all of its futures are
     * complete. Rows time out in the order they entered the batch, so the rows with a result are a
     * prefix, and TensorFlow runs only the rows after it.
     */
    void score(InputBatch batch) {
        int first = 0;
        while (first < batch.size && batch.futures[first].isDone()) {
            first++;
        }
        if (first == batch.size) {
            return;
        }
        long start = nanoClock.getAsLong();
        int scored = scoreRange(batch, first, batch.size - first);
        long end = nanoClock.getAsLong();
        metrics.batchLatency.labelValues(labels).observe((end - start) / 1e9);
        metrics.batchSize.labelValues(labels).observe(batch.size - first);
        metrics.predictions.labelValues(labels).inc(scored);
        if (scored > 0) {
            metrics.lastSuccessfulBatch.labelValues(labels).set(System.currentTimeMillis() / 1000.0);
        }
        if (flinkCounters != null) {
            flinkCounters.predictions().inc(scored);
        }
    }

    /** Records the latency of one row, from entering the batcher to its result. */
    private void observeLatency(long latencyNanos) {
        metrics.predictionLatency.labelValues(labels).observe(latencyNanos / 1e9);
        if (flinkCounters != null) {
            flinkCounters.latencyMillis().update(latencyNanos / 1_000_000);
        }
    }

    /** Scores rows [from, from + count); returns how many rows were completed with a score. */
    private int scoreRange(InputBatch batch, int from, int count) {
        Object[][] values;
        try {
            values = run(batch, from, count);
        } catch (RuntimeException e) {
            if (count > 1) {
                int half = count / 2;
                return scoreRange(batch, from, half) + scoreRange(batch, from + half, count - half);
            }
            completeWithError(batch.futures[from], "TF_ERROR", e.getMessage(),
                    nanoClock.getAsLong() - batch.enqueuedNanos[from]);
            return 0;
        }
        long now = nanoClock.getAsLong();
        int completed = 0;
        for (int row = 0; row < count; row++) {
            Row output = new Row(outputArity());
            for (int o = 0; o < outputs.size(); o++) {
                output.setField(o, values[o][row]);
            }
            output.setField(outputs.size(), model.spec.version());
            if (batch.futures[from + row].complete(List.of(output))) {
                completed++;
                observeLatency(now - batch.enqueuedNanos[from + row]);
            }
        }
        return completed;
    }

    /**
     * Completes a row that never entered the batcher with an error row and counts it, unless the
     * row is complete already. Thread-safe.
     */
    void completeWithError(
            CompletableFuture<Collection<Row>> future, String errorCode, String message) {
        completeWithError(future, errorCode, message, -1);
    }

    /**
     * Completes a row with an error row and counts it, unless the row is complete already. A
     * {@code waitedNanos} of 0 or more is recorded as the row's latency. Thread-safe.
     */
    void completeWithError(
            CompletableFuture<Collection<Row>> future,
            String errorCode,
            String message,
            long waitedNanos) {
        Row output = new Row(outputArity());
        output.setField(outputs.size(), model.spec.version());
        output.setField(outputs.size() + 1, errorCode);
        output.setField(outputs.size() + 2, message);
        if (!future.complete(List.of(output))) {
            return;
        }
        if (waitedNanos >= 0) {
            observeLatency(waitedNanos);
        }
        metrics.predictionErrors.labelValues(labels[0], labels[1], labels[2], errorCode).inc();
        if (flinkCounters != null) {
            flinkCounters.errors().inc();
        }
        synchronized (this) {
            if (loggedErrors++ < 10) {
                LOG.warn("Row not scored ({}): {}", errorCode, message);
            } else if (loggedErrors % 10_000 == 0) {
                LOG.warn("{} rows not scored so far; the latest ({}): {}", loggedErrors, errorCode, message);
            }
        }
    }

    /** Runs TensorFlow on rows [from, from + count); returns values[output][row]. */
    private Object[][] run(InputBatch batch, int from, int count) {
        Map<String, Tensor> feeds = new LinkedHashMap<>();
        try {
            for (int i = 0; i < inputs.size(); i++) {
                feeds.put(inputs.get(i).name(), batch.columns[i].toTensor(from, count));
            }
            try (Result result = model.function.call(feeds)) {
                Object[][] values = new Object[outputs.size()][];
                for (int o = 0; o < outputs.size(); o++) {
                    TensorSpec spec = outputs.get(o);
                    Tensor tensor =
                            result.get(spec.name())
                                    .orElseThrow(
                                            () ->
                                                    new IllegalStateException(
                                                            "TensorFlow returned no output '"
                                                                    + spec.name()
                                                                    + "'"));
                    values[o] = readOutput(spec, tensor, count);
                }
                return values;
            }
        } finally {
            for (Tensor tensor : feeds.values()) {
                tensor.close();
            }
        }
    }

    /** Copies an output tensor into one boxed value (or array) per row. */
    static Object[] readOutput(TensorSpec spec, Tensor tensor, int rows) {
        int width = Math.max(spec.width(), 1);
        long expected = (long) rows * width;
        if (tensor.shape().size() != expected) {
            throw new IllegalStateException(
                    "Output '"
                            + spec.name()
                            + "' has shape "
                            + tensor.shape()
                            + ", expected "
                            + rows
                            + (spec.width() == 0 ? "" : " x " + spec.width())
                            + " values");
        }
        Object[] flat = new Object[(int) expected];
        switch (spec.type()) {
            case FLOAT32 -> {
                float[] data = new float[flat.length];
                ((TFloat32) tensor).copyTo(DataBuffers.of(data, false, false));
                for (int i = 0; i < data.length; i++) flat[i] = data[i];
            }
            case FLOAT64 -> {
                double[] data = new double[flat.length];
                ((TFloat64) tensor).copyTo(DataBuffers.of(data, false, false));
                for (int i = 0; i < data.length; i++) flat[i] = data[i];
            }
            case INT32 -> {
                int[] data = new int[flat.length];
                ((TInt32) tensor).copyTo(DataBuffers.of(data, false, false));
                for (int i = 0; i < data.length; i++) flat[i] = data[i];
            }
            case INT64 -> {
                long[] data = new long[flat.length];
                ((TInt64) tensor).copyTo(DataBuffers.of(data, false, false));
                for (int i = 0; i < data.length; i++) flat[i] = data[i];
            }
            case BOOL -> {
                boolean[] data = new boolean[flat.length];
                ((TBool) tensor).copyTo(DataBuffers.of(data, false, false));
                for (int i = 0; i < data.length; i++) flat[i] = data[i];
            }
            case STRING -> {
                String[] data = new String[flat.length];
                ((TString) tensor).copyTo(DataBuffers.ofObjects(data));
                System.arraycopy(data, 0, flat, 0, data.length);
            }
        }
        if (spec.width() == 0) {
            return flat;
        }
        Object[] perRow = new Object[rows];
        for (int row = 0; row < rows; row++) {
            Object[] array = newArray(spec.type(), spec.width());
            System.arraycopy(flat, row * spec.width(), array, 0, spec.width());
            perRow[row] = array;
        }
        return perRow;
    }

    private static Object[] newArray(TensorType type, int length) {
        return switch (type) {
            case FLOAT32 -> new Float[length];
            case FLOAT64 -> new Double[length];
            case INT32 -> new Integer[length];
            case INT64 -> new Long[length];
            case BOOL -> new Boolean[length];
            case STRING -> new String[length];
        };
    }

    /**
     * Runs one row of neutral values (0, false, "") so the first real batch pays no setup. A model
     * that rejects those values is logged and left cold.
     */
    void warmUp() {
        try {
            runNeutralRow();
        } catch (RuntimeException e) {
            LOG.warn("Warming up model {} version {} failed, so its first batch pays the setup: {}",
                    model.spec.modelName(), model.spec.version(), e.toString());
        }
    }

    private void runNeutralRow() {
        InputBatch batch = new InputBatch(inputs, 1);
        Object[] values = new Object[inputs.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] =
                    switch (inputs.get(i).type()) {
                        case FLOAT32 -> 0.0f;
                        case FLOAT64 -> 0.0;
                        case INT32 -> 0;
                        case INT64 -> 0L;
                        case BOOL -> false;
                        case STRING -> "";
                    };
        }
        batch.add(values, 0, new CompletableFuture<>(), nanoClock.getAsLong());
        long start = nanoClock.getAsLong();
        run(batch, 0, 1);
        LOG.info(
                "Warmed up model {} version {} in {} ms",
                model.spec.modelName(),
                model.spec.version(),
                (nanoClock.getAsLong() - start) / 1_000_000);
    }

    List<String> outputNames() {
        List<String> names = new ArrayList<>();
        for (TensorSpec spec : outputs) names.add(spec.name());
        return names;
    }
}
