package io.pyscoring.scoring;

import java.io.Serializable;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.types.DataType;

/**
 * One input or output of a serving signature.
 *
 * @param width 0 for one value per row (shape {@code [-1]}), k for an array of k values per
 *     row (shape {@code [-1, k]})
 */
public record TensorSpec(String name, TensorType type, int width) implements Serializable {

    /** Returns the Flink SQL type of one row's value: a scalar, or an array for shape [-1, k]. */
    public DataType sqlType() {
        return width == 0 ? type.sqlType() : DataTypes.ARRAY(type.sqlType());
    }

    /** Parses a manifest shape: [-1] or [-1, k]; the batch dimension must be unknown. */
    static int widthOf(long[] shape, String field) {
        if (shape.length == 1 && shape[0] == -1) {
            return 0;
        }
        if (shape.length == 2 && shape[0] == -1 && shape[1] > 0) {
            return (int) shape[1];
        }
        throw new IllegalArgumentException(
                "Unsupported shape "
                        + java.util.Arrays.toString(shape)
                        + " of "
                        + field
                        + "; pyscoring scores signatures whose tensors have shape [-1] or [-1, k]");
    }
}
