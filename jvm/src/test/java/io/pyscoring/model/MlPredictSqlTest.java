package io.pyscoring.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.ExceptionUtils;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Runs CREATE MODEL and ML_PREDICT over the committed tiny model in a local MiniCluster. */
class MlPredictSqlTest {

    private TableEnvironment tableEnv;

    @BeforeEach
    void createEnvironment() throws Exception {
        tableEnv = TableEnvironment.create(EnvironmentSettings.inStreamingMode());
        tableEnv.getConfig().set("parallelism.default", "1");
        tableEnv.getConfig().set("table.exec.async-ml-predict.max-concurrent-operations", "8");
        tableEnv.executeSql(
                "CREATE TEMPORARY VIEW features AS SELECT * FROM (VALUES"
                        + " (1, CAST(1.5 AS FLOAT), CAST(2 AS BIGINT), 'a'),"
                        + " (2, CAST(-1.0 AS FLOAT), CAST(0 AS BIGINT), 'b'),"
                        + " (3, CAST(1.0 AS FLOAT), CAST(-3 AS BIGINT), 'b'),"
                        + " (4, CAST(0.0 AS FLOAT), CAST(10 AS BIGINT), 'a')"
                        + ") AS t(id, x, `count`, label)");
    }

    private void createModel(String outputs) throws Exception {
        tableEnv.executeSql(
                "CREATE TEMPORARY MODEL tiny INPUT (label STRING, x FLOAT, `count` BIGINT)"
                        + " OUTPUT ("
                        + outputs
                        + ") WITH ('provider' = 'pyscoring', 'path' = '"
                        + PyscoringModelProviderFactoryTest.tinyExport()
                        + "', 'max-batch-size' = '4')");
    }

    private List<Row> predict() throws Exception {
        List<Row> rows = new ArrayList<>();
        try (CloseableIterator<Row> result =
                tableEnv.executeSql(
                                "SELECT * FROM ML_PREDICT(TABLE features, MODEL tiny,"
                                        + " DESCRIPTOR(label, x, `count`))")
                        .collect()) {
            result.forEachRemaining(rows::add);
        }
        rows.sort(Comparator.comparing(row -> (Integer) row.getField("id")));
        return rows;
    }

    @Test
    void scoresRowsAndEmitsErrorsAsColumns() throws Exception {
        createModel(
                "y FLOAT, pair ARRAY<FLOAT>, model_version BIGINT, error_code STRING, error STRING");
        List<Row> rows = predict();

        assertEquals(4, rows.size());
        // y = 2 * x + count + (label == "a")
        assertEquals(6.0f, rows.get(0).getField("y"));
        assertArrayEquals(new Float[] {1.5f, -1.5f}, (Float[]) rows.get(0).getField("pair"));
        assertEquals(1L, rows.get(0).getField("model_version"));
        assertNull(rows.get(0).getField("error_code"));
        assertEquals(-2.0f, rows.get(1).getField("y"));
        assertEquals(11.0f, rows.get(3).getField("y"));
        assertEquals("a", rows.get(3).getField("label"));

        Row rejected = rows.get(2);
        assertNull(rejected.getField("y"));
        assertEquals("TF_ERROR", rejected.getField("error_code"));
        String error = (String) rejected.getField("error");
        assertTrue(error.contains("count must not be negative"), error);
    }

    @Test
    void narrowerDescriptorColumnsAreWidened() throws Exception {
        createModel("y FLOAT");
        tableEnv.executeSql(
                "CREATE TEMPORARY VIEW narrow AS SELECT label, CAST(id AS INT) AS ix,"
                        + " CAST(id AS DECIMAL(5, 1)) AS dx FROM features");
        List<Row> rows = new ArrayList<>();
        try (CloseableIterator<Row> result =
                tableEnv.executeSql(
                                "SELECT * FROM ML_PREDICT(TABLE narrow, MODEL tiny,"
                                        + " DESCRIPTOR(label, dx, ix))")
                        .collect()) {
            result.forEachRemaining(rows::add);
        }
        rows.sort(Comparator.comparing(row -> (Integer) row.getField("ix")));
        // y = 2 * x + count + (label == "a"), with x = count = id
        assertEquals(
                List.of(4.0f, 6.0f, 9.0f, 13.0f),
                rows.stream().map(row -> row.getField("y")).toList());
    }

    @Test
    void incompatibleDescriptorTypeIsRejectedByPlanner() throws Exception {
        createModel("y FLOAT");
        Exception error =
                assertThrows(
                        Exception.class,
                        () ->
                                tableEnv.executeSql(
                                        "SELECT * FROM ML_PREDICT(TABLE features, MODEL tiny,"
                                                + " DESCRIPTOR(label, label, `count`))"));
        String trace = ExceptionUtils.stringifyException(error);
        assertTrue(trace.contains("cannot be assigned to model input type FLOAT"), trace);
    }

    @Test
    void unscoredRowFailsJobWithoutErrorColumns() throws Exception {
        createModel("y FLOAT");
        Exception error = assertThrows(Exception.class, this::predict);
        String trace = ExceptionUtils.stringifyException(error);
        assertTrue(trace.contains("could not score a row (TF_ERROR)"), trace);
        assertTrue(trace.contains("error_code STRING"), trace);
    }
}
