package io.pyscoring.scoring;

import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.TString;

/**
 * Values of one signature input for the rows of a batch, in a primitive array that is reused
 * from batch to batch.
 *
 * <p>Not thread-safe: the eval thread writes a batch, then hands the whole batch to the scoring
 * thread, which builds the tensor from it; the batcher's lock orders the two.
 */
abstract class ColumnBuffer {

    /** Stores one row's value; {@code value} is never null (the caller rejects nulls). */
    abstract void set(int row, Object value);

    /** Builds a tensor of rows [from, from + count) with one copy of the primitive values. */
    abstract Tensor toTensor(int from, int count);

    /** Drops references to row objects so that a reused buffer does not keep them alive. */
    void clear(int count) {}

    static ColumnBuffer create(TensorType type, int capacity) {
        return switch (type) {
            case FLOAT32 -> new Float32Column(capacity);
            case FLOAT64 -> new Float64Column(capacity);
            case INT32 -> new Int32Column(capacity);
            case INT64 -> new Int64Column(capacity);
            case BOOL -> new BoolColumn(capacity);
            case STRING -> new StringColumn(capacity);
        };
    }

    private static final class Float32Column extends ColumnBuffer {
        private final float[] values;

        Float32Column(int capacity) {
            values = new float[capacity];
        }

        @Override
        void set(int row, Object value) {
            values[row] = ((Number) value).floatValue();
        }

        @Override
        Tensor toTensor(int from, int count) {
            return TFloat32.tensorOf(
                    Shape.of(count), DataBuffers.of(values, true, false).slice(from, count));
        }
    }

    private static final class Float64Column extends ColumnBuffer {
        private final double[] values;

        Float64Column(int capacity) {
            values = new double[capacity];
        }

        @Override
        void set(int row, Object value) {
            values[row] = ((Number) value).doubleValue();
        }

        @Override
        Tensor toTensor(int from, int count) {
            return TFloat64.tensorOf(
                    Shape.of(count), DataBuffers.of(values, true, false).slice(from, count));
        }
    }

    private static final class Int32Column extends ColumnBuffer {
        private final int[] values;

        Int32Column(int capacity) {
            values = new int[capacity];
        }

        @Override
        void set(int row, Object value) {
            values[row] = ((Number) value).intValue();
        }

        @Override
        Tensor toTensor(int from, int count) {
            return TInt32.tensorOf(
                    Shape.of(count), DataBuffers.of(values, true, false).slice(from, count));
        }
    }

    private static final class Int64Column extends ColumnBuffer {
        private final long[] values;

        Int64Column(int capacity) {
            values = new long[capacity];
        }

        @Override
        void set(int row, Object value) {
            values[row] = ((Number) value).longValue();
        }

        @Override
        Tensor toTensor(int from, int count) {
            return TInt64.tensorOf(
                    Shape.of(count), DataBuffers.of(values, true, false).slice(from, count));
        }
    }

    private static final class BoolColumn extends ColumnBuffer {
        private final boolean[] values;

        BoolColumn(int capacity) {
            values = new boolean[capacity];
        }

        @Override
        void set(int row, Object value) {
            values[row] = (Boolean) value;
        }

        @Override
        Tensor toTensor(int from, int count) {
            return TBool.tensorOf(
                    Shape.of(count), DataBuffers.of(values, true, false).slice(from, count));
        }
    }

    private static final class StringColumn extends ColumnBuffer {
        private final String[] values;

        StringColumn(int capacity) {
            values = new String[capacity];
        }

        @Override
        void set(int row, Object value) {
            values[row] = value.toString();
        }

        @Override
        Tensor toTensor(int from, int count) {
            return TString.tensorOf(
                    Shape.of(count), DataBuffers.ofObjects(values).slice(from, count));
        }

        @Override
        void clear(int count) {
            java.util.Arrays.fill(values, 0, count, null);
        }
    }
}
