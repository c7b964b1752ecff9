package io.pyscoring.scoring;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.pyscoring.metrics.ScoringMetrics;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Scores the committed tiny model (see make_test_models.py) through TensorFlow Java. */
class BatchScorerTest {

    private static LoadedModel model;
    private static BatchScorer scorer;

    static Path tinyExport() throws URISyntaxException {
        return Path.of(BatchScorerTest.class.getResource("/models/tiny").toURI());
    }

    @BeforeAll
    static void load() throws Exception {
        ModelSpec spec = ModelSpec.read(tinyExport());
        model = LoadedModel.acquire(spec, ScoringOptions.defaults());
        scorer = new BatchScorer(model, System::nanoTime, null);
        scorer.warmUp();
    }

    @AfterAll
    static void release() {
        LoadedModel.release(model);
    }

    private static List<Row> score(Object[][] rows) throws Exception {
        InputBatch batch = new InputBatch(model.spec.inputs(), rows.length);
        List<CompletableFuture<Collection<Row>>> futures = new ArrayList<>();
        for (Object[] values : rows) {
            CompletableFuture<Collection<Row>> future = new CompletableFuture<>();
            batch.add(values, 0, future, System.nanoTime());
            futures.add(future);
        }
        scorer.score(batch);
        List<Row> result = new ArrayList<>();
        for (CompletableFuture<Collection<Row>> future : futures) {
            assertTrue(future.isDone(), "a row was left without a result");
            Collection<Row> rowsOut = future.get();
            assertEquals(1, rowsOut.size());
            result.add(rowsOut.iterator().next());
        }
        return result;
    }

    @Test
    void scoresEachRowWithItsOwnInputs() throws Exception {
        List<Row> rows =
                score(new Object[][] {{1.5f, 2L, "a"}, {-1.0f, 0L, "b"}, {0.0f, 10L, "a"}});
        // y = 2 * x + count + (label == "a")
        assertEquals(6.0f, rows.get(0).getField(0));
        assertEquals(-2.0f, rows.get(1).getField(0));
        assertEquals(11.0f, rows.get(2).getField(0));
        assertArrayEquals(new Float[] {1.5f, -1.5f}, (Float[]) rows.get(0).getField(1));
        assertEquals(1L, rows.get(0).getField(2));
        assertNull(rows.get(0).getField(3));
    }

    @Test
    void rowRejectedByTensorFlowIsIsolated() throws Exception {
        Object[][] input = new Object[9][];
        for (int i = 0; i < input.length; i++) {
            input[i] = new Object[] {1.0f, (long) i, "b"};
        }
        input[5] = new Object[] {1.0f, -3L, "b"};
        List<Row> rows = score(input);
        for (int i = 0; i < rows.size(); i++) {
            Row row = rows.get(i);
            if (i == 5) {
                assertNull(row.getField(0));
                assertEquals("TF_ERROR", row.getField(3));
                assertTrue(((String) row.getField(4)).contains("count must not be negative"),
                        (String) row.getField(4));
            } else {
                assertEquals(2.0f + i, row.getField(0), "row " + i);
                assertNull(row.getField(3), "row " + i);
            }
        }
    }

    /** Returns the sum and the count of {@code histogram}'s data point for the tiny model. */
    private static double[] sumAndCount(Histogram histogram) {
        for (HistogramSnapshot.HistogramDataPointSnapshot point : histogram.collect().getDataPoints()) {
            if (model.spec.modelName().equals(point.getLabels().get("model"))
                    && String.valueOf(model.spec.version()).equals(point.getLabels().get("version"))) {
                return new double[] {point.getSum(), point.getCount()};
            }
        }
        return new double[] {0, 0};
    }

    @Test
    void timedOutPrefixIsNotRun() throws Exception {
        InputBatch batch = new InputBatch(model.spec.inputs(), 2);
        CompletableFuture<Collection<Row>> timedOut = new CompletableFuture<>();
        CompletableFuture<Collection<Row>> waiting = new CompletableFuture<>();
        // TensorFlow would reject the first row's negative count.
        batch.add(new Object[] {1.0f, -3L, "b"}, 0, timedOut, System.nanoTime());
        batch.add(new Object[] {1.0f, 2L, "b"}, 0, waiting, System.nanoTime());
        ScoringMetrics metrics = ScoringMetrics.get();
        double[] sizesBefore = sumAndCount(metrics.batchSize);
        double[] latencyBefore = sumAndCount(metrics.predictionLatency);

        scorer.completeWithError(timedOut, "TIMEOUT", "no result in time", 5_000_000L);
        scorer.score(batch);

        assertEquals("TIMEOUT", timedOut.get().iterator().next().getField(3));
        Row scored = waiting.get().iterator().next();
        assertEquals(4.0f, scored.getField(0));
        assertNull(scored.getField(3));
        double[] sizesAfter = sumAndCount(metrics.batchSize);
        assertEquals(1.0, sizesAfter[0] - sizesBefore[0], "rows in the TensorFlow call");
        assertEquals(1.0, sizesAfter[1] - sizesBefore[1], "TensorFlow calls");
        double[] latencyAfter = sumAndCount(metrics.predictionLatency);
        assertEquals(2.0, latencyAfter[1] - latencyBefore[1], "rows with a latency");
        assertTrue(latencyAfter[0] - latencyBefore[0] >= 0.005, "the timed-out row's 5 ms");
    }

    @Test
    void fullyTimedOutBatchIsNotRun() throws Exception {
        InputBatch batch = new InputBatch(model.spec.inputs(), 1);
        CompletableFuture<Collection<Row>> timedOut = new CompletableFuture<>();
        batch.add(new Object[] {1.0f, 2L, "b"}, 0, timedOut, System.nanoTime());
        double[] sizesBefore = sumAndCount(ScoringMetrics.get().batchSize);

        scorer.completeWithError(timedOut, "TIMEOUT", "no result in time", 0);
        scorer.score(batch);

        assertEquals("TIMEOUT", timedOut.get().iterator().next().getField(3));
        assertEquals(sizesBefore[1], sumAndCount(ScoringMetrics.get().batchSize)[1]);
    }

    @Test
    void outputTypeFollowsSignature() throws Exception {
        assertEquals(
                "ROW<`y` FLOAT, `pair` ARRAY<FLOAT>, `model_version` BIGINT,"
                        + " `error_code` STRING, `error` STRING>",
                PredictFunction.outputType(model.spec).toString());
    }

    @Test
    void modelAboveBudgetIsNotLoaded() throws Exception {
        ModelSpec spec = ModelSpec.read(tinyExport());
        ScoringOptions tiny = ScoringOptions.fromMap(Map.of("scoring.jvm.max-model-bytes", "1"));
        IllegalArgumentException error =
                assertThrows(IllegalArgumentException.class, () -> LoadedModel.acquire(spec, tiny));
        assertTrue(error.getMessage().contains("scoring.jvm.max-model-bytes=1"), error.getMessage());
    }

    @Test
    void missingExportDirectoryIsNamed() {
        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> ModelSpec.read(Path.of("/nonexistent/export")));
        assertTrue(error.getMessage().contains("/nonexistent/export"), error.getMessage());
    }

    @Test
    void unsupportedDtypeIsNamed() {
        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> TensorType.fromManifestName("complex64", "input 'z'"));
        assertTrue(error.getMessage().contains("complex64"));
        assertTrue(error.getMessage().contains("input 'z'"));
    }

    @Test
    void optionsRejectMalformedPortRange() {
        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> ScoringOptions.fromMap(Map.of("metrics.port-range", "9300")));
        assertTrue(error.getMessage().contains("9300"));
    }
}
