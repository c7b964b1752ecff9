package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimitedSourceReader;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.ObjectIdentifier;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.util.List;
import java.util.Map;

class LinesTableSourceFactoryTest {

    private static final ObjectIdentifier TABLE = ObjectIdentifier.of("cat", "db", "lines");

    @TempDir java.nio.file.Path tempDir;

    private static LinesSource sourceFrom(Map<String, String> options) {
        return LinesTableSourceFactory.createSource(Configuration.fromMap(options));
    }

    @Test
    void optionDefaults() {
        LinesSource source = sourceFrom(Map.of("path", "/data"));

        assertEquals("/data", source.path());
        assertEquals(0.0, source.rowsPerSecond());
        assertFalse(source.loop());
        assertEquals(Boundedness.BOUNDED, source.getBoundedness());
    }

    @Test
    void optionsParsed() {
        LinesSource source =
                sourceFrom(Map.of("path", "/data", "rows-per-second", "2.5", "loop", "true"));

        assertEquals(2.5, source.rowsPerSecond());
        assertTrue(source.loop());
        assertEquals(Boundedness.CONTINUOUS_UNBOUNDED, source.getBoundedness());
    }

    @Test
    void blankPathRejected() {
        ValidationException error =
                assertThrows(ValidationException.class, () -> sourceFrom(Map.of("path", " ")));

        assertTrue(error.getMessage().contains("'path'"), error.getMessage());
    }

    @Test
    void negativeRateRejected() {
        ValidationException error =
                assertThrows(
                        ValidationException.class,
                        () -> sourceFrom(Map.of("path", "/data", "rows-per-second", "-1")));

        assertTrue(error.getMessage().contains("'rows-per-second'"), error.getMessage());
        assertTrue(error.getMessage().contains("-1.0"), error.getMessage());
    }

    @Test
    void nonFiniteRateRejected() {
        assertThrows(
                ValidationException.class,
                () -> sourceFrom(Map.of("path", "/data", "rows-per-second", "NaN")));
        assertThrows(
                ValidationException.class,
                () -> sourceFrom(Map.of("path", "/data", "rows-per-second", "Infinity")));
    }

    @Test
    void nonNumericRateRejected() {
        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> sourceFrom(Map.of("path", "/data", "rows-per-second", "fast")));

        assertTrue(error.getMessage().contains("rows-per-second"), error.getMessage());
    }

    @Test
    void readerWithoutRateLimitNotWrapped() {
        LinesSource source = sourceFrom(Map.of("path", "/data"));

        SourceReader<RowData, LinesSplit> reader =
                source.createReader(new TestingReaderContext());

        assertInstanceOf(LinesSourceReader.class, reader);
    }

    /**
     * 40 rows per second over 2 subtasks is 20 per subtask, so 11 rows take at least 10
     * intervals of 50 ms.
     */
    @Test
    void rateLimitDividedAcrossSubtasks() throws Exception {
        java.nio.file.Path file = tempDir.resolve("rows.txt");
        Files.writeString(file, "r\n".repeat(11));
        LinesSource source =
                sourceFrom(Map.of("path", file.toString(), "rows-per-second", "40"));
        SourceReader<RowData, LinesSplit> reader =
                source.createReader(new TestingReaderContext(0, 2, () -> {}));
        assertInstanceOf(RateLimitedSourceReader.class, reader);
        reader.addSplits(List.of(LinesSplit.atStart("file:" + file, 0)));
        reader.notifyNoMoreSplits();
        CollectingReaderOutput output = new CollectingReaderOutput();

        long start = System.nanoTime();
        InputStatus status = InputStatus.NOTHING_AVAILABLE;
        while (status != InputStatus.END_OF_INPUT) {
            reader.isAvailable().get();
            status = reader.pollNext(output);
        }
        long elapsedMillis = (System.nanoTime() - start) / 1_000_000;
        reader.close();

        assertEquals(11, output.rows.size());
        assertTrue(elapsedMillis >= 450, "11 rows at 20 per second took " + elapsedMillis + " ms");
    }

    @Test
    void matchingSchemaAccepted() {
        DataType declared =
                DataTypes.ROW(
                        DataTypes.FIELD("source", DataTypes.STRING().notNull()),
                        DataTypes.FIELD("line_number", DataTypes.BIGINT()),
                        DataTypes.FIELD("key", DataTypes.STRING()),
                        DataTypes.FIELD("line", DataTypes.STRING()));

        assertDoesNotThrow(() -> LinesTableSourceFactory.validateSchema(TABLE, declared));
    }

    @Test
    void wrongColumnTypeRejected() {
        DataType declared =
                DataTypes.ROW(
                        DataTypes.FIELD("source", DataTypes.STRING()),
                        DataTypes.FIELD("line_number", DataTypes.INT()),
                        DataTypes.FIELD("key", DataTypes.STRING()),
                        DataTypes.FIELD("line", DataTypes.STRING()));

        ValidationException error =
                assertThrows(
                        ValidationException.class,
                        () -> LinesTableSourceFactory.validateSchema(TABLE, declared));

        assertTrue(error.getMessage().contains("line_number INT,"), error.getMessage());
        assertTrue(error.getMessage().contains("line_number BIGINT"), error.getMessage());
        assertTrue(error.getMessage().contains("cat.db.lines"), error.getMessage());
    }

    @Test
    void missingColumnRejected() {
        DataType declared =
                DataTypes.ROW(
                        DataTypes.FIELD("source", DataTypes.STRING()),
                        DataTypes.FIELD("line", DataTypes.STRING()));

        assertThrows(
                ValidationException.class,
                () -> LinesTableSourceFactory.validateSchema(TABLE, declared));
    }

    @Test
    void notNullLineRejected() {
        DataType declared =
                DataTypes.ROW(
                        DataTypes.FIELD("source", DataTypes.STRING()),
                        DataTypes.FIELD("line_number", DataTypes.BIGINT()),
                        DataTypes.FIELD("key", DataTypes.STRING()),
                        DataTypes.FIELD("line", DataTypes.STRING().notNull()));

        ValidationException error =
                assertThrows(
                        ValidationException.class,
                        () -> LinesTableSourceFactory.validateSchema(TABLE, declared));

        assertTrue(error.getMessage().contains("NOT NULL"), error.getMessage());
    }

    @Test
    void lineBytesColumnAccepted() {
        DataType declared =
                DataTypes.ROW(
                        DataTypes.FIELD("source", DataTypes.STRING()),
                        DataTypes.FIELD("line_number", DataTypes.BIGINT()),
                        DataTypes.FIELD("key", DataTypes.STRING()),
                        DataTypes.FIELD("line", DataTypes.STRING()),
                        DataTypes.FIELD("line_bytes", DataTypes.BYTES()));

        assertDoesNotThrow(() -> LinesTableSourceFactory.validateSchema(TABLE, declared));
        assertTrue(LinesTableSourceFactory.declaresLineBytes(declared));
    }

    @Test
    void misnamedFifthColumnRejected() {
        DataType declared =
                DataTypes.ROW(
                        DataTypes.FIELD("source", DataTypes.STRING()),
                        DataTypes.FIELD("line_number", DataTypes.BIGINT()),
                        DataTypes.FIELD("key", DataTypes.STRING()),
                        DataTypes.FIELD("line", DataTypes.STRING()),
                        DataTypes.FIELD("raw", DataTypes.BYTES()));

        ValidationException error =
                assertThrows(
                        ValidationException.class,
                        () -> LinesTableSourceFactory.validateSchema(TABLE, declared));

        assertTrue(error.getMessage().contains("line_bytes BYTES"), error.getMessage());
    }
}
