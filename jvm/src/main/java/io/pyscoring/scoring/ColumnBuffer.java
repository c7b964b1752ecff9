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

        /** TF_TString structs of the small kind for the rows of a batch, reused; see SmallStrings. */
        private byte[] structs;

        @Override
        Tensor toTensor(int from, int count) {
            if (SmallStrings.ENABLED) {
                if (structs == null) {
                    structs = new byte[values.length * SmallStrings.STRUCT_BYTES];
                }
                if (SmallStrings.encode(values, from, count, structs)) {
                    return SmallStrings.tensor(structs, count);
                }
            }
            // TensorFlow Java copies each value into a native buffer of its own.
            return TString.tensorOf(
                    Shape.of(count), DataBuffers.ofObjects(values).slice(from, count));
        }

        @Override
        void clear(int count) {
            java.util.Arrays.fill(values, 0, count, null);
        }
    }

    /**
     * Builds string tensors whose values all fit TensorFlow's inline ("small") TF_TString form,
     * with one copy of a byte array into the tensor.
     *
     * <p>TensorFlow Java's {@link TString#tensorOf} allocates a native buffer through JavaCPP for
     * every value, and JavaCPP reads the process's memory use on each allocation unless {@code
     * org.bytedeco.javacpp.maxPhysicalBytes} is 0; for the census model that made building the
     * input tensors many times slower than the TensorFlow call. A TF_TString is a 24-byte struct
     * (TensorFlow's ctstring_internal.h, since TensorFlow 2.4). On little-endian machines its
     * small form stores {@code size << 2} (type bits 00) in the first byte and up to 22 UTF-8
     * bytes inline after it, NUL-terminated. A tensor of such structs owns no heap
     * memory, so TensorFlow frees it like a numeric tensor. A value of more than 22 bytes makes
     * {@link #encode} return false, and the caller falls back to TensorFlow Java's path.
     */
    static final class SmallStrings {

        static final int STRUCT_BYTES = 24;
        static final int MAX_BYTES = 22;
        private static final org.slf4j.Logger LOG =
                org.slf4j.LoggerFactory.getLogger(SmallStrings.class);

        /** Whether the native byte order and a round trip through TensorFlow confirm the layout. */
        static final boolean ENABLED =
                java.nio.ByteOrder.nativeOrder() == java.nio.ByteOrder.LITTLE_ENDIAN && selfCheck();

        private SmallStrings() {}

        /**
         * Writes values [from, from + count) as small TF_TString structs into {@code structs};
         * returns false, leaving {@code structs} partly written, when a value needs more than
         * {@value #MAX_BYTES} UTF-8 bytes.
         */
        static boolean encode(String[] values, int from, int count, byte[] structs) {
            java.util.Arrays.fill(structs, 0, count * STRUCT_BYTES, (byte) 0);
            for (int i = 0; i < count; i++) {
                String value = values[from + i];
                int length = value.length();
                // UTF-8 needs at least one byte per UTF-16 char.
                if (length > MAX_BYTES) {
                    return false;
                }
                int base = i * STRUCT_BYTES;
                for (int c = 0; c < length; c++) {
                    char ch = value.charAt(c);
                    if (ch >= 0x80) {
                        byte[] bytes = value.getBytes(java.nio.charset.StandardCharsets.UTF_8);
                        if (bytes.length > MAX_BYTES) {
                            return false;
                        }
                        System.arraycopy(bytes, 0, structs, base + 1, bytes.length);
                        length = bytes.length;
                        break;
                    }
                    structs[base + 1 + c] = (byte) ch;
                }
                structs[base] = (byte) (length << 2);
            }
            return true;
        }

        /** Copies the first {@code count} structs into a new string tensor of shape [count]. */
        static Tensor tensor(byte[] structs, int count) {
            return Tensor.of(
                    TString.class,
                    Shape.of(count),
                    DataBuffers.of(structs, true, false).slice(0, (long) count * STRUCT_BYTES));
        }

        /** Encodes sample values and reads them back through TensorFlow's own TF_TString reader. */
        private static boolean selfCheck() {
            String[] sample = {
                "", "a", "Married-civ-spouse", "0123456789012345678901", "\u00e9\u00fc"
            };
            byte[] structs = new byte[sample.length * STRUCT_BYTES];
            try {
                if (!encode(sample, 0, sample.length, structs)) {
                    LOG.warn("Small string tensors are off: the sample values did not encode");
                    return false;
                }
                try (TString tensor = (TString) tensor(structs, sample.length)) {
                    for (int i = 0; i < sample.length; i++) {
                        if (!sample[i].equals(tensor.getObject(i))) {
                            LOG.warn(
                                    "Small string tensors are off: TensorFlow read '{}' back as '{}'",
                                    sample[i],
                                    tensor.getObject(i));
                            return false;
                        }
                    }
                }
                return true;
            } catch (RuntimeException e) {
                LOG.warn("Small string tensors are off: the layout check failed", e);
                return false;
            }
        }
    }
}
