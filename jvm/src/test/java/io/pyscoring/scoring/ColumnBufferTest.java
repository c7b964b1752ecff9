package io.pyscoring.scoring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.tensorflow.Tensor;
import org.tensorflow.types.TString;

/** String tensors built by the small-string path, and its fallback for long values. */
class ColumnBufferTest {

    private static final String MAX_ASCII = "0123456789012345678901";

    private static String[] readBack(ColumnBuffer column, int from, int count) {
        try (Tensor tensor = column.toTensor(from, count)) {
            TString strings = (TString) tensor;
            assertEquals(count, strings.shape().size());
            String[] values = new String[count];
            for (int i = 0; i < count; i++) {
                values[i] = strings.getObject(i);
            }
            return values;
        }
    }

    private static ColumnBuffer column(String... values) {
        ColumnBuffer column = ColumnBuffer.create(TensorType.STRING, values.length);
        for (int i = 0; i < values.length; i++) {
            column.set(i, values[i]);
        }
        return column;
    }

    @Test
    void smallStringsEnabledOnThisMachine() {
        assertTrue(ColumnBuffer.SmallStrings.ENABLED, "the layout check failed; see the log");
    }

    @Test
    void encodeRejectsValuesOver22Bytes() {
        byte[] structs = new byte[ColumnBuffer.SmallStrings.STRUCT_BYTES];
        assertTrue(ColumnBuffer.SmallStrings.encode(new String[] {MAX_ASCII}, 0, 1, structs));
        assertFalse(ColumnBuffer.SmallStrings.encode(new String[] {MAX_ASCII + "x"}, 0, 1, structs));
        // "é" is two UTF-8 bytes: 11 fit, 12 do not.
        assertTrue(ColumnBuffer.SmallStrings.encode(new String[] {"é".repeat(11)}, 0, 1, structs));
        assertFalse(ColumnBuffer.SmallStrings.encode(new String[] {"é".repeat(12)}, 0, 1, structs));
    }

    @Test
    void smallValuesRoundTrip() {
        String[] values = {"", "a", "Married-civ-spouse", MAX_ASCII, "é ü", "日本"};
        assertEquals(java.util.List.of(values), java.util.List.of(readBack(column(values), 0, 6)));
    }

    @Test
    void sliceStartsAtFrom() {
        String[] values = {"skip", "b", "c"};
        assertEquals(java.util.List.of("b", "c"), java.util.List.of(readBack(column(values), 1, 2)));
    }

    @Test
    void longValueFallsBack() {
        String[] values = {"a", "Outlying-US(Guam-USVI-etc)", "b"};
        assertEquals(java.util.List.of(values), java.util.List.of(readBack(column(values), 0, 3)));
    }

    @Test
    void reusedBufferClearsLongerValues() {
        ColumnBuffer column = column(MAX_ASCII, MAX_ASCII);
        readBack(column, 0, 2);
        column.set(0, "x");
        column.set(1, "");
        assertEquals(java.util.List.of("x", ""), java.util.List.of(readBack(column, 0, 2)));
    }
}
