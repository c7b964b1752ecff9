package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pyscoring.parse.ParseFunction;

import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.ExceptionUtils;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** Runs Flink SQL jobs over the connector and the parse function in a local MiniCluster. */
class LinesSqlEndToEndTest {

    private static final String CENSUS_SCHEMA =
            "age BIGINT, workclass STRING, fnlwgt BIGINT, education STRING, education_num INT,"
                    + " marital_status STRING, occupation STRING, relationship STRING,"
                    + " race STRING, sex STRING, capital_gain DOUBLE, capital_loss DOUBLE,"
                    + " hours_per_week DOUBLE, native_country STRING, income STRING";

    private static final String CENSUS_LINE_1 =
            "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family,"
                    + " White, Male, 2174, 0, 40, United-States, <=50K";
    private static final String CENSUS_LINE_2 =
            "18, ?, 103497, Some-college, 10, Never-married, ?, Own-child, White, Female,"
                    + " 0, 0, 30, ?, <=50K.";

    @TempDir java.nio.file.Path tempDir;

    private TableEnvironment tableEnv;

    @BeforeEach
    void createEnvironment() {
        tableEnv = TableEnvironment.create(EnvironmentSettings.inStreamingMode());
        tableEnv.getConfig().set("parallelism.default", "2");
        tableEnv.createTemporarySystemFunction(ParseFunction.NAME, ParseFunction.class);
    }

    private void createLinesTable(String path, String extraOptions) {
        tableEnv.executeSql(
                "CREATE TABLE lines (source STRING, line_number BIGINT, `key` STRING, line STRING)"
                        + " WITH ('connector' = 'pyscoring-lines', 'path' = '"
                        + path
                        + "'"
                        + extraOptions
                        + ")");
    }

    private static List<Row> collectAll(CloseableIterator<Row> rows) throws Exception {
        List<Row> result = new ArrayList<>();
        try (rows) {
            rows.forEachRemaining(result::add);
        }
        return result;
    }

    private static Row rowWithKey(List<Row> rows, String key) {
        return rows.stream()
                .filter(row -> key.equals(row.getField("key")))
                .findFirst()
                .orElseThrow(() -> new AssertionError("no row with key " + key + " in " + rows));
    }

    @Test
    void sqlJobParsesFolder() throws Exception {
        ByteArrayOutputStream a = new ByteArrayOutputStream();
        String censusLines = CENSUS_LINE_1 + "\r\n\r\n" + CENSUS_LINE_2 + "\r\n";
        a.writeBytes(censusLines.getBytes(StandardCharsets.UTF_8));
        a.writeBytes(new byte[] {'4', '0', ',', ' ', (byte) 0xFF, '\r', '\n'});
        a.writeBytes("41, Private\r\n".getBytes(StandardCharsets.UTF_8));
        Files.write(tempDir.resolve("a.data"), a.toByteArray());
        Files.writeString(tempDir.resolve("b.data"), CENSUS_LINE_1.replace("39", "NaN") + "\n");
        Files.writeString(tempDir.resolve(".hidden"), CENSUS_LINE_1 + "\n");
        createLinesTable(tempDir.toString(), "");

        List<Row> rows =
                collectAll(
                        tableEnv.executeSql(
                                        "SELECT l.source, l.line_number, l.`key`, p.age,"
                                                + " p.workclass, p.education_num, p.capital_gain,"
                                                + " p.income, p.error_code, p.error"
                                                + " FROM lines AS l, LATERAL TABLE(pyscoring_parse("
                                                + "l.line, '"
                                                + CENSUS_SCHEMA
                                                + "', ', ')) AS p")
                                .collect());

        assertEquals(6, rows.size(), rows.toString());

        Row first = rowWithKey(rows, "a.data:1");
        assertEquals("a.data", first.getField("source"));
        assertEquals(1L, first.getField("line_number"));
        assertEquals(39L, first.getField("age"));
        assertEquals("State-gov", first.getField("workclass"));
        assertEquals(13, first.getField("education_num"));
        assertEquals(2174.0, first.getField("capital_gain"));
        assertEquals("<=50K", first.getField("income"));
        assertEquals(null, first.getField("error_code"));

        assertEquals("EMPTY_LINE", rowWithKey(rows, "a.data:2").getField("error_code"));

        Row missingValues = rowWithKey(rows, "a.data:3");
        assertEquals("?", missingValues.getField("workclass"));
        assertEquals("<=50K.", missingValues.getField("income"));
        assertEquals(null, missingValues.getField("error_code"));

        Row malformed = rowWithKey(rows, "a.data:4");
        assertEquals("NULL_LINE", malformed.getField("error_code"));
        assertEquals(null, malformed.getField("age"));

        Row tooShort = rowWithKey(rows, "a.data:5");
        assertEquals("FIELD_COUNT", tooShort.getField("error_code"));
        assertEquals(
                "expected 15 fields, got 2 when splitting at ', '", tooShort.getField("error"));

        Row notFinite = rowWithKey(rows, "b.data:1");
        assertEquals("NOT_FINITE", notFinite.getField("error_code"));
        String notFiniteError = (String) notFinite.getField("error");
        assertTrue(notFiniteError.startsWith("column 'age' (BIGINT): 'NaN'"), notFiniteError);
    }

    @Test
    void loopKeysCarryPass() throws Exception {
        Files.writeString(tempDir.resolve("one.txt"), "a\nb\n");
        createLinesTable(tempDir.resolve("one.txt").toString(), ", 'loop' = 'true'");
        tableEnv.getConfig().set("parallelism.default", "1");

        List<String> keys = new ArrayList<>();
        try (CloseableIterator<Row> rows = tableEnv.executeSql("SELECT key FROM lines").collect()) {
            while (keys.size() < 6 && rows.hasNext()) {
                keys.add((String) rows.next().getField(0));
            }
        }

        assertEquals(
                List.of("one.txt:1", "one.txt:2", "one.txt:1#1", "one.txt:2#1", "one.txt:1#2",
                        "one.txt:2#2"),
                keys);
    }

    @Test
    void missingPathFailsJobWithoutRestarts() {
        String missing = tempDir.resolve("missing-folder").toString();
        createLinesTable(missing, "");
        tableEnv.getConfig().set("execution.checkpointing.interval", "100 ms");
        tableEnv.getConfig().set("restart-strategy.type", "fixed-delay");
        tableEnv.getConfig().set("restart-strategy.fixed-delay.attempts", "1000000");

        // The statement is planned in this thread, because the planner keeps per-thread state.
        // Only the wait for the job result runs under the timeout.
        TableResult result = tableEnv.executeSql("SELECT * FROM lines");
        Exception error =
                assertTimeoutPreemptively(
                        Duration.ofSeconds(60),
                        () -> assertThrows(Exception.class, () -> collectAll(result.collect())));

        Optional<InvalidSourcePathException> cause =
                ExceptionUtils.findThrowable(error, InvalidSourcePathException.class);
        assertTrue(cause.isPresent(), ExceptionUtils.stringifyException(error));
        assertTrue(cause.get().getMessage().contains(missing), cause.get().getMessage());
        assertTrue(cause.get().getMessage().contains("'path'"), cause.get().getMessage());
    }

    @Test
    void wrongSchemaRejectedAtPlanning() {
        tableEnv.executeSql(
                "CREATE TABLE bad (source STRING, line STRING) WITH ('connector' ="
                        + " 'pyscoring-lines', 'path' = '/tmp')");

        ValidationException error =
                assertThrows(
                        ValidationException.class,
                        () -> tableEnv.executeSql("SELECT * FROM bad").collect().close());

        String message = ExceptionUtils.stringifyException(error);
        assertTrue(message.contains("line_number BIGINT"), message);
    }

    @Test
    void unknownOptionRejectedAtPlanning() {
        createLinesTable("/tmp", ", 'rows_per_second' = '5'");

        ValidationException error =
                assertThrows(
                        ValidationException.class,
                        () -> tableEnv.executeSql("SELECT * FROM lines").collect().close());

        String message = ExceptionUtils.stringifyException(error);
        assertTrue(message.contains("rows_per_second"), message);
    }
}
