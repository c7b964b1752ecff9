package io.pyscoring.model;

import io.pyscoring.model.SchemaBinding.OutputColumn;
import io.pyscoring.scoring.ModelSpec;
import io.pyscoring.scoring.ScoringOptions;
import io.pyscoring.scoring.SubtaskScorer;
import io.pyscoring.scoring.TensorType;
import java.nio.file.Path;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.data.DecimalData;
import org.apache.flink.table.data.GenericArrayData;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.functions.AsyncPredictFunction;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.types.Row;
import org.apache.flink.util.FlinkRuntimeException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code ML_PREDICT} function of the pyscoring provider: scores each feature row with the
 * Java scorer's {@link SubtaskScorer} and returns the declared OUTPUT columns.
 *
 * <p>A row that cannot be scored (a NULL feature, or a row TensorFlow rejects) is emitted with
 * NULL outputs and its {@code error_code} and {@code error} when the OUTPUT clause declares
 * {@code error_code}. Without that column such a row fails the job with the error.
 *
 * <p>Public because the planner's generated code refers to the class by name.
 */
public final class ModelPredictFunction extends AsyncPredictFunction {

    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(ModelPredictFunction.class);

    private final String model;
    private final String versionDir;
    private final SchemaBinding binding;
    private final HashMap<String, String> scoringOverrides;

    private transient SubtaskScorer scorer;
    private transient ModelSpec spec;
    private transient int outputCount;

    ModelPredictFunction(
            String model,
            String versionDir,
            SchemaBinding binding,
            Map<String, String> scoringOverrides) {
        this.model = model;
        this.versionDir = versionDir;
        this.binding = binding;
        this.scoringOverrides = new HashMap<>(scoringOverrides);
    }

    @Override
    public void open(FunctionContext context) throws Exception {
        ScoringOptions options =
                ScoringOptions.fromLookup(
                        key -> {
                            String value = scoringOverrides.get(key);
                            return value != null ? value : context.getJobParameter(key, null);
                        });
        spec = ModelSpec.read(Path.of(versionDir));
        outputCount = spec.outputs().size();
        MetricGroup group =
                context.getMetricGroup()
                        .addGroup("pyscoring")
                        .addGroup("model", spec.modelName());
        group.gauge("modelVersion", spec::version);
        String threadName =
                "pyscoring-ml-predict-"
                        + context.getTaskInfo()
                                .getTaskNameWithSubtasks()
                                .replaceAll("[^A-Za-z0-9()/_-]", "_");
        scorer = SubtaskScorer.open(spec, options, group, threadName);
        LOG.info(
                "ML_PREDICT with model {} scores {} version {}: max batch {} rows, max delay {} ms",
                model,
                spec.modelName(),
                spec.version(),
                options.maxBatchSize,
                options.maxBatchDelayMs);
    }

    @Override
    public CompletableFuture<Collection<RowData>> asyncPredict(RowData features) {
        Object[] values = new Object[binding.featurePositions.length];
        for (int i = 0; i < values.length; i++) {
            values[i] = readFeature(features, binding.featurePositions[i], i);
        }
        CompletableFuture<Collection<Row>> scored = new CompletableFuture<>();
        try {
            scorer.submit(values, scored);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return CompletableFuture.failedFuture(e);
        }
        return scored.thenApply(this::toOutputRows);
    }

    /**
     * Reads signature input {@code input} from the feature row. Flink 2.3's planner accepts a
     * DESCRIPTOR column whose type casts implicitly to the INPUT column's, but hands the value over
     * uncast. So integers are widened here to larger integers and to floating point, and FLOAT,
     * DOUBLE and DECIMAL to the float type of the input. Any other type fails the job naming the
     * column.
     */
    private Object readFeature(RowData features, int position, int input) {
        if (features.isNullAt(position)) {
            return null;
        }
        TensorType type = binding.inputTypes[input];
        if (!(features instanceof GenericRowData generic)) {
            return switch (type) {
                case FLOAT32 -> features.getFloat(position);
                case FLOAT64 -> features.getDouble(position);
                case INT32 -> features.getInt(position);
                case INT64 -> features.getLong(position);
                case BOOL -> features.getBoolean(position);
                case STRING -> features.getString(position).toString();
            };
        }
        Object value = generic.getField(position);
        if (value instanceof DecimalData decimal
                && (type == TensorType.FLOAT32 || type == TensorType.FLOAT64)) {
            value = decimal.toBigDecimal().doubleValue();
        }
        boolean integral =
                value instanceof Integer || value instanceof Short || value instanceof Byte;
        Object converted =
                switch (type) {
                    case INT64 ->
                            integral || value instanceof Long ? ((Number) value).longValue() : null;
                    case INT32 -> integral ? ((Number) value).intValue() : null;
                    case FLOAT32 ->
                            integral
                                            || value instanceof Long
                                            || value instanceof Float
                                            || value instanceof Double
                                    ? ((Number) value).floatValue()
                                    : null;
                    case FLOAT64 ->
                            integral
                                            || value instanceof Long
                                            || value instanceof Float
                                            || value instanceof Double
                                    ? ((Number) value).doubleValue()
                                    : null;
                    case BOOL -> value instanceof Boolean ? value : null;
                    case STRING -> value instanceof StringData ? value.toString() : null;
                };
        if (converted == null) {
            String name = spec.inputs().get(input).name();
            throw new FlinkRuntimeException(
                    String.format(
                            "Model %s: the DESCRIPTOR column at position %d, which feeds the"
                                    + " INPUT column '%s' (%s), holds %s values; cast the column"
                                    + " to %s in the query that ML_PREDICT reads",
                            model,
                            position + 1,
                            name,
                            type.manifestName,
                            value.getClass().getSimpleName(),
                            type.sqlType()));
        }
        return converted;
    }

    /** Converts the scorer's row (outputs, model_version, error_code, error) to OUTPUT. */
    private Collection<RowData> toOutputRows(Collection<Row> rows) {
        Row row = rows.iterator().next();
        Object errorCode = row.getField(outputCount + 1);
        if (errorCode != null && !binding.emitsErrors()) {
            throw new CompletionException(
                    new FlinkRuntimeException(
                            String.format(
                                    "Model %s could not score a row (%s): %s. Declare"
                                            + " `error_code STRING` and `error STRING` in the"
                                            + " model's OUTPUT clause to receive such rows with"
                                            + " NULL outputs instead of failing the job",
                                    model, errorCode, row.getField(outputCount + 2))));
        }
        GenericRowData output = new GenericRowData(binding.outputs.size());
        for (int i = 0; i < binding.outputs.size(); i++) {
            OutputColumn column = binding.outputs.get(i);
            output.setField(
                    i,
                    switch (column.kind()) {
                        case SIGNATURE -> toInternal(row.getField(column.signatureIndex()));
                        case MODEL_VERSION -> row.getField(outputCount);
                        case ERROR_CODE -> toInternal(errorCode);
                        case ERROR -> toInternal(row.getField(outputCount + 2));
                    });
        }
        return List.of(output);
    }

    /** Converts a scorer value (boxed scalar, String or boxed array) to Flink's internal form. */
    private static Object toInternal(Object value) {
        if (value instanceof String text) {
            return StringData.fromString(text);
        }
        if (value instanceof String[] texts) {
            Object[] elements = new Object[texts.length];
            for (int i = 0; i < texts.length; i++) {
                elements[i] = StringData.fromString(texts[i]);
            }
            return new GenericArrayData(elements);
        }
        if (value instanceof Object[] array) {
            return new GenericArrayData(array);
        }
        return value;
    }

    @Override
    public void close() throws Exception {
        if (scorer != null) {
            scorer.close();
            scorer = null;
        }
    }
}
