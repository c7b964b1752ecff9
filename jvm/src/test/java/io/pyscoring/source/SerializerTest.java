package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.List;

class SerializerTest {

    private static final LinesSplit SPLIT =
            new LinesSplit("file:/data/adult/adult.test", 4, 123_456_789_012L, 16_281);

    @Test
    void splitRoundTrip() throws IOException {
        LinesSplitSerializer serializer = LinesSplitSerializer.INSTANCE;
        byte[] bytes = serializer.serialize(SPLIT);

        LinesSplit copy = serializer.deserialize(serializer.getVersion(), bytes);

        assertEquals(SPLIT, copy);
        assertEquals("adult.test", copy.fileName());
        assertEquals(SPLIT.splitId(), copy.splitId());
    }

    @Test
    void splitWithNonAsciiPathRoundTrip() throws IOException {
        LinesSplit split =
                LinesSplit.atStart("file:/tmp/donn\u00e9es/f\u00fcr \u6570\u636e.txt", 0);
        LinesSplitSerializer serializer = LinesSplitSerializer.INSTANCE;

        LinesSplit copy = serializer.deserialize(1, serializer.serialize(split));

        assertEquals(split, copy);
        assertEquals("f\u00fcr \u6570\u636e.txt", copy.fileName());
    }

    @Test
    void splitUnknownVersionRejected() throws IOException {
        byte[] bytes = LinesSplitSerializer.INSTANCE.serialize(SPLIT);

        IOException error =
                assertThrows(
                        IOException.class,
                        () -> LinesSplitSerializer.INSTANCE.deserialize(2, bytes));

        assertTrue(error.getMessage().contains("version 2"), error.getMessage());
    }

    @Test
    void enumeratorStateRoundTrip() throws IOException {
        LinesEnumeratorState state =
                new LinesEnumeratorState(
                        List.of("file:/data/a.txt", "file:/data/b.txt"),
                        List.of(SPLIT, LinesSplit.atStart("file:/data/b.txt", 4)),
                        5);
        LinesEnumeratorStateSerializer serializer = LinesEnumeratorStateSerializer.INSTANCE;

        LinesEnumeratorState copy =
                serializer.deserialize(serializer.getVersion(), serializer.serialize(state));

        assertEquals(state, copy);
    }

    @Test
    void emptyEnumeratorStateRoundTrip() throws IOException {
        LinesEnumeratorState state = new LinesEnumeratorState(List.of(), List.of(), 1);
        LinesEnumeratorStateSerializer serializer = LinesEnumeratorStateSerializer.INSTANCE;

        assertEquals(state, serializer.deserialize(1, serializer.serialize(state)));
    }

    @Test
    void enumeratorStateUnknownVersionRejected() throws IOException {
        LinesEnumeratorState state = new LinesEnumeratorState(List.of(), List.of(), 1);
        byte[] bytes = LinesEnumeratorStateSerializer.INSTANCE.serialize(state);

        assertThrows(
                IOException.class,
                () -> LinesEnumeratorStateSerializer.INSTANCE.deserialize(0, bytes));
    }
}
