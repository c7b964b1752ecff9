package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

class LineReaderTest {

    /** Lines read from {@code text}, each followed by the offset after it. */
    private static List<String> read(String text, int bufferSize) throws IOException {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        List<String> result = new ArrayList<>();
        try (LineReader reader = new LineReader(new ByteArrayInputStream(bytes), 0, bufferSize)) {
            while (reader.readLine()) {
                byte[] line = Arrays.copyOf(reader.lineBytes(), reader.lineLength());
                result.add(new String(line, StandardCharsets.UTF_8) + "@" + reader.offset());
            }
        }
        return result;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 65536})
    void lineFeedEndings(int bufferSize) throws IOException {
        assertEquals(List.of("a@2", "bc@5"), read("a\nbc\n", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 65536})
    void crlfEndingsStripped(int bufferSize) throws IOException {
        assertEquals(List.of("a@3", "bc@7"), read("a\r\nbc\r\n", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 65536})
    void loneCarriageReturnKept(int bufferSize) throws IOException {
        assertEquals(List.of("a\rb@4", "c\r@6"), read("a\rb\nc\r", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 65536})
    void emptyLinesCounted(int bufferSize) throws IOException {
        assertEquals(List.of("@1", "@3", "x@5", "@6"), read("\n\r\nx\n\n", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 65536})
    void lastLineWithoutTerminator(int bufferSize) throws IOException {
        assertEquals(List.of("a@2", "b@3"), read("a\nb", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 65536})
    void emptyStreamHasNoLines(int bufferSize) throws IOException {
        assertEquals(List.of(), read("", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 65536})
    void lineLongerThanBuffer(int bufferSize) throws IOException {
        String longLine = "x".repeat(1000);
        assertEquals(List.of(longLine + "@1002", "y@1004"), read(longLine + "\r\ny\n", bufferSize));
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 65536})
    void offsetsStartAtGivenPosition(int bufferSize) throws IOException {
        byte[] bytes = "c\nd".getBytes(StandardCharsets.UTF_8);
        try (LineReader reader = new LineReader(new ByteArrayInputStream(bytes), 100, bufferSize)) {
            reader.readLine();
            assertEquals(102, reader.offset());
            reader.readLine();
            assertEquals(103, reader.offset());
        }
    }
}
