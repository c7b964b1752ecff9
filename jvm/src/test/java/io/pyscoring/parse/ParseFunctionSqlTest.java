package io.pyscoring.parse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.types.DataType;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.ExceptionUtils;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

/** Plans and runs {@code pyscoring_parse} in Flink SQL over VALUES rows. */
class ParseFunctionSqlTest {

    private TableEnvironment tableEnv;

    @BeforeEach
    void createEnvironment() {
        tableEnv = TableEnvironment.create(EnvironmentSettings.inStreamingMode());
        tableEnv.getConfig().set("parallelism.default", "1");
        tableEnv.createTemporarySystemFunction(ParseFunction.NAME, ParseFunction.class);
        tableEnv.executeSql(
                "CREATE TEMPORARY VIEW input (id, line) AS VALUES"
                        + " (1, '7, 2.5, yes, x'),"
                        + " (2, '?, ?, ?, ?'),"
                        + " (3, 'seven, 2.5, yes, x'),"
                        + " (4, CAST(NULL AS STRING))");
    }

    private List<Row> query(String sql) throws Exception {
        List<Row> rows = new ArrayList<>();
        try (CloseableIterator<Row> iterator = tableEnv.executeSql(sql).collect()) {
            iterator.forEachRemaining(rows::add);
        }
        rows.sort((a, b) -> Integer.compare((Integer) a.getField(0), (Integer) b.getField(0)));
        return rows;
    }

    private String planningError(String sql) {
        ValidationException error =
                assertThrows(ValidationException.class, () -> tableEnv.executeSql(sql));
        return ExceptionUtils.stringifyException(error);
    }

    @Test
    void typedColumnsAndErrors() throws Exception {
        List<Row> rows =
                query(
                        "SELECT i.id, p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'n INT, d FLOAT, b BOOLEAN, s STRING', ', ')) AS p");

        assertEquals(4, rows.size());
        assertEquals(Row.of(1, 7, 2.5f, true, "x", null, null), rows.get(0));
        assertEquals(Row.of(2, null, null, null, "?", null, null), rows.get(1));
        assertEquals(3, rows.get(2).getField(0));
        assertNull(rows.get(2).getField(1));
        assertEquals("NOT_A_NUMBER", rows.get(2).getField(5));
        assertEquals("column 'n' (INT): 'seven' is not a valid INT (an integer without fraction or"
                + " exponent)", rows.get(2).getField(6));
        assertEquals("NULL_LINE", rows.get(3).getField(5));
    }

    @Test
    void outputTypeFromSchemaLiteral() {
        DataType type =
                tableEnv.sqlQuery(
                                "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse("
                                        + "i.line, 'age BIGINT NOT NULL, name STRING', ','))"
                                        + " AS p")
                        .getResolvedSchema()
                        .toPhysicalRowDataType();

        assertEquals(
                DataTypes.ROW(
                                DataTypes.FIELD("age", DataTypes.BIGINT()),
                                DataTypes.FIELD("name", DataTypes.STRING()),
                                DataTypes.FIELD("error_code", DataTypes.STRING()),
                                DataTypes.FIELD("error", DataTypes.STRING()))
                        .notNull(),
                type);
    }

    @Test
    void schemaColumnRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " i.line, ',')) AS p");

        assertTrue(message.contains("argument 'schema' must be a string literal"), message);
    }

    @Test
    void delimiterColumnRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'a STRING', i.line)) AS p");

        assertTrue(message.contains("argument 'delimiter' must be a string literal"), message);
    }

    @Test
    void unsupportedTypeRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'a STRING, born DATE', ',')) AS p");

        assertTrue(message.contains("column 'born' has type DATE"), message);
        assertTrue(message.contains("STRING, BIGINT, INT, DOUBLE, FLOAT, BOOLEAN"), message);
    }

    @Test
    void boundedStringRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'a VARCHAR(10)', ',')) AS p");

        assertTrue(message.contains("column 'a' has type VARCHAR(10)"), message);
    }

    @Test
    void invalidSchemaSyntaxRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'a STRING,, b', ',')) AS p");

        assertTrue(message.contains("argument 'schema' is invalid: 'a STRING,, b'"), message);
    }

    @Test
    void reservedColumnNameRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'error STRING', ',')) AS p");

        assertTrue(message.contains("schema column 'error' clashes"), message);
    }

    @Test
    void emptyDelimiterRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'a STRING', '')) AS p");

        assertTrue(message.contains("argument 'delimiter' is empty"), message);
    }

    @Test
    void nonStringLineRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.id,"
                                + " 'a STRING', ',')) AS p");

        assertTrue(message.contains("argument 'line' must be STRING, got INT"), message);
    }

    @Test
    void lineBytesGiveInvalidUtf8() throws Exception {
        tableEnv.createTemporarySystemFunction(EscapeBytesFunction.NAME, EscapeBytesFunction.class);
        tableEnv.createTemporarySystemFunction(
                CountDeadLetterFunction.NAME, CountDeadLetterFunction.class);
        var counter =
                io.pyscoring.metrics.ScoringMetrics.get()
                        .deadLetters
                        .labelValues("sql-test", "", "jvm", "INVALID_UTF8");
        double before = counter.get();

        List<Row> rows =
                query(
                        "SELECT i.id, pyscoring_count_dead_letter('sql-test', 'jvm', p.error_code,"
                                + " CAST(NULL AS BIGINT)), pyscoring_escape_bytes(i.b)"
                                + " FROM (SELECT id, CAST(NULL AS STRING) AS line,"
                                + " X'41FF42' AS b FROM input WHERE id = 1) AS i,"
                                + " LATERAL TABLE(pyscoring_parse(i.line, 'a STRING', ',', i.b))"
                                + " AS p");

        assertEquals(1, rows.size());
        assertEquals("INVALID_UTF8", rows.get(0).getField(1));
        assertEquals("A\\xffB", rows.get(0).getField(2));
        assertEquals(before + 1, counter.get());
    }

    @Test
    void nonBinaryLineBytesRejected() {
        String message =
                planningError(
                        "SELECT p.* FROM input AS i, LATERAL TABLE(pyscoring_parse(i.line,"
                                + " 'a STRING', ',', i.line)) AS p");

        assertTrue(message.contains("argument 'line_bytes' must be BYTES"), message);
    }
}
