package io.pyscoring.model;

import io.pyscoring.scoring.ModelSpec;
import io.pyscoring.scoring.TensorSpec;
import io.pyscoring.scoring.TensorType;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.Column;
import org.apache.flink.table.catalog.ResolvedSchema;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.ArrayType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * How the {@code INPUT} and {@code OUTPUT} columns of a {@code CREATE MODEL} statement map to a
 * SavedModel's serving signature.
 *
 * <p>Columns match signature tensors by name, in any order. {@code INPUT} names every signature
 * input exactly once. {@code OUTPUT} names any of the signature outputs, and may add the columns
 * {@code model_version BIGINT}, {@code error_code STRING} and {@code error STRING}. Each column's
 * type must be the SQL type of its tensor: BIGINT for int64, INT for int32, FLOAT for float32,
 * DOUBLE for float64, BOOLEAN for bool, STRING (or CHAR/VARCHAR) for string, and ARRAY of these
 * for a shape {@code [-1, k]}.
 */
final class SchemaBinding implements Serializable {

    private static final long serialVersionUID = 1L;

    static final String MODEL_VERSION = "model_version";
    static final String ERROR_CODE = "error_code";
    static final String ERROR = "error";

    /** The source of an OUTPUT column's value. */
    enum OutputKind {
        SIGNATURE,
        MODEL_VERSION,
        ERROR_CODE,
        ERROR
    }

    /**
     * One OUTPUT column.
     *
     * @param signatureIndex the position among the signature outputs for kind SIGNATURE, else -1
     */
    record OutputColumn(String name, OutputKind kind, int signatureIndex, TensorType type)
            implements Serializable {}

    /** For signature input i, the position of its column in the feature row. */
    final int[] featurePositions;

    /** The dtype of each signature input, in signature order. */
    final TensorType[] inputTypes;

    final List<OutputColumn> outputs;

    private SchemaBinding(int[] featurePositions, TensorType[] inputTypes, List<OutputColumn> outputs) {
        this.featurePositions = featurePositions;
        this.inputTypes = inputTypes;
        this.outputs = outputs;
    }

    /** True when OUTPUT declares {@code error_code}, so rows that fail are emitted, not thrown. */
    boolean emitsErrors() {
        return outputs.stream().anyMatch(column -> column.kind() == OutputKind.ERROR_CODE);
    }

    /**
     * Binds the model's declared columns to the signature of {@code spec}; throws a {@link
     * ValidationException} naming the first column that does not fit.
     */
    static SchemaBinding bind(
            String model, ModelSpec spec, ResolvedSchema inputSchema, ResolvedSchema outputSchema) {
        List<TensorSpec> inputs = spec.inputs();
        List<String> inputNames = inputSchema.getColumnNames();
        int[] positions = new int[inputs.size()];
        TensorType[] types = new TensorType[inputs.size()];
        for (int i = 0; i < inputs.size(); i++) {
            TensorSpec input = inputs.get(i);
            int position = inputNames.indexOf(input.name());
            if (position < 0) {
                throw invalid(
                        model,
                        spec,
                        String.format(
                                "the INPUT clause has no column '%s' for the signature input of"
                                        + " that name; the signature inputs are %s",
                                input.name(),
                                names(inputs)));
            }
            if (input.width() != 0) {
                throw invalid(
                        model,
                        spec,
                        String.format(
                                "the signature input '%s' has shape [-1, %d]; the pyscoring"
                                        + " provider takes inputs of shape [-1] only",
                                input.name(),
                                input.width()));
            }
            checkType(model, spec, "INPUT", inputSchema.getColumns().get(position), input);
            positions[i] = position;
            types[i] = input.type();
        }
        for (String name : inputNames) {
            if (inputs.stream().noneMatch(input -> input.name().equals(name))) {
                throw invalid(
                        model,
                        spec,
                        String.format(
                                "the INPUT column '%s' is not a signature input; the signature"
                                        + " inputs are %s",
                                name,
                                names(inputs)));
            }
        }

        List<OutputColumn> outputs = new ArrayList<>();
        List<TensorSpec> signatureOutputs = spec.outputs();
        for (Column column : outputSchema.getColumns()) {
            String name = column.getName();
            int index = indexOf(signatureOutputs, name);
            if (index >= 0) {
                TensorSpec output = signatureOutputs.get(index);
                checkType(model, spec, "OUTPUT", column, output);
                outputs.add(new OutputColumn(name, OutputKind.SIGNATURE, index, output.type()));
            } else if (name.equals(MODEL_VERSION)) {
                checkExtraType(model, spec, column, LogicalTypeRoot.BIGINT, "BIGINT");
                outputs.add(new OutputColumn(name, OutputKind.MODEL_VERSION, -1, null));
            } else if (name.equals(ERROR_CODE)) {
                checkExtraType(model, spec, column, LogicalTypeRoot.VARCHAR, "STRING");
                outputs.add(new OutputColumn(name, OutputKind.ERROR_CODE, -1, null));
            } else if (name.equals(ERROR)) {
                checkExtraType(model, spec, column, LogicalTypeRoot.VARCHAR, "STRING");
                outputs.add(new OutputColumn(name, OutputKind.ERROR, -1, null));
            } else {
                throw invalid(
                        model,
                        spec,
                        String.format(
                                "the OUTPUT column '%s' is neither a signature output (%s) nor"
                                        + " one of %s, %s, %s",
                                name,
                                names(signatureOutputs),
                                MODEL_VERSION,
                                ERROR_CODE,
                                ERROR));
            }
        }
        return new SchemaBinding(positions, types, List.copyOf(outputs));
    }

    private static int indexOf(List<TensorSpec> tensors, String name) {
        for (int i = 0; i < tensors.size(); i++) {
            if (tensors.get(i).name().equals(name)) {
                return i;
            }
        }
        return -1;
    }

    private static String names(List<TensorSpec> tensors) {
        return Arrays.toString(tensors.stream().map(TensorSpec::name).toArray());
    }

    private static void checkType(
            String model, ModelSpec spec, String clause, Column column, TensorSpec tensor) {
        DataType expected = tensor.sqlType();
        if (!sameType(column.getDataType().getLogicalType(), expected.getLogicalType())) {
            throw invalid(
                    model,
                    spec,
                    String.format(
                            "the %s column '%s' is %s, but the signature tensor '%s' is %s%s,"
                                    + " which needs %s; declare the column as %s",
                            clause,
                            column.getName(),
                            column.getDataType(),
                            tensor.name(),
                            tensor.type().manifestName,
                            tensor.width() == 0 ? "" : " of shape [-1, " + tensor.width() + "]",
                            expected,
                            expected));
        }
    }

    private static void checkExtraType(
            String model, ModelSpec spec, Column column, LogicalTypeRoot root, String sqlName) {
        LogicalTypeRoot given = column.getDataType().getLogicalType().getTypeRoot();
        boolean matches =
                given == root
                        || (root == LogicalTypeRoot.VARCHAR && given == LogicalTypeRoot.CHAR);
        if (!matches) {
            throw invalid(
                    model,
                    spec,
                    String.format(
                            "the OUTPUT column '%s' is %s; declare it as %s",
                            column.getName(),
                            column.getDataType(),
                            sqlName));
        }
    }

    /** Compares type roots, treating CHAR like VARCHAR and comparing array elements. */
    static boolean sameType(LogicalType given, LogicalType expected) {
        LogicalTypeRoot givenRoot = given.getTypeRoot();
        LogicalTypeRoot expectedRoot = expected.getTypeRoot();
        if (expectedRoot == LogicalTypeRoot.ARRAY) {
            return givenRoot == LogicalTypeRoot.ARRAY
                    && sameType(
                            ((ArrayType) given).getElementType(),
                            ((ArrayType) expected).getElementType());
        }
        if (expectedRoot == LogicalTypeRoot.VARCHAR) {
            return givenRoot == LogicalTypeRoot.VARCHAR || givenRoot == LogicalTypeRoot.CHAR;
        }
        return givenRoot == expectedRoot;
    }

    private static ValidationException invalid(String model, ModelSpec spec, String problem) {
        return new ValidationException(
                String.format(
                        "Model %s does not match the signature of %s version %d in %s: %s."
                                + " `pyscoring ddl EXPORT_DIR` prints a matching CREATE MODEL"
                                + " statement",
                        model, spec.modelName(), spec.version(), spec.versionDir(), problem));
    }
}
