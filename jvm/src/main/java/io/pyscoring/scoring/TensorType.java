package io.pyscoring.scoring;

import java.util.Arrays;
import java.util.stream.Collectors;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.tensorflow.proto.DataType;

/**
 * The TensorFlow dtypes a pyscoring signature may use, with their manifest names and the Flink
 * SQL types that carry them.
 */
public enum TensorType {
    FLOAT32("float32", DataType.DT_FLOAT, LogicalTypeRoot.FLOAT),
    FLOAT64("float64", DataType.DT_DOUBLE, LogicalTypeRoot.DOUBLE),
    INT32("int32", DataType.DT_INT32, LogicalTypeRoot.INTEGER),
    INT64("int64", DataType.DT_INT64, LogicalTypeRoot.BIGINT),
    BOOL("bool", DataType.DT_BOOL, LogicalTypeRoot.BOOLEAN),
    STRING("string", DataType.DT_STRING, LogicalTypeRoot.VARCHAR);

    /** The dtype's name in the manifest, as TensorFlow's Python API spells it. */
    public final String manifestName;

    public final DataType tensorFlowType;

    /** The root of the Flink SQL type of one value. */
    public final LogicalTypeRoot sqlRoot;

    TensorType(String manifestName, DataType tensorFlowType, LogicalTypeRoot sqlRoot) {
        this.manifestName = manifestName;
        this.tensorFlowType = tensorFlowType;
        this.sqlRoot = sqlRoot;
    }

    /** The Flink SQL type of one value of this dtype. */
    public org.apache.flink.table.types.DataType sqlType() {
        return switch (this) {
            case FLOAT32 -> DataTypes.FLOAT();
            case FLOAT64 -> DataTypes.DOUBLE();
            case INT32 -> DataTypes.INT();
            case INT64 -> DataTypes.BIGINT();
            case BOOL -> DataTypes.BOOLEAN();
            case STRING -> DataTypes.STRING();
        };
    }

    public static TensorType fromManifestName(String name, String field) {
        for (TensorType type : values()) {
            if (type.manifestName.equals(name)) {
                return type;
            }
        }
        throw new IllegalArgumentException(
                "Unsupported dtype '"
                        + name
                        + "' of "
                        + field
                        + "; pyscoring supports "
                        + supportedNames());
    }

    public static TensorType fromTensorFlow(DataType type, String field) {
        for (TensorType candidate : values()) {
            if (candidate.tensorFlowType == type) {
                return candidate;
            }
        }
        throw new IllegalArgumentException(
                "Unsupported TensorFlow dtype "
                        + type
                        + " of "
                        + field
                        + "; pyscoring supports "
                        + supportedNames());
    }

    static String supportedNames() {
        return Arrays.stream(values()).map(t -> t.manifestName).collect(Collectors.joining(", "));
    }
}
