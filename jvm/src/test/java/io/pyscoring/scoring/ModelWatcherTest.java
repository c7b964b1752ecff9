package io.pyscoring.scoring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pyscoring.metrics.ScoringMetrics;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Background loading of new versions, and rejection of versions that must not serve. */
class ModelWatcherTest {

    private static final long WAIT_MILLIS = 30_000;

    @TempDir Path exportDir;

    @TempDir Path staging;

    private static ScoringOptions options(String maxModelBytes) {
        return ScoringOptions.fromMap(
                Map.of(
                        ScoringOptions.WATCH_INTERVAL_MS.name(), "50",
                        ScoringOptions.MAX_MODEL_BYTES.name(), maxModelBytes));
    }

    private static void waitFor(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.currentTimeMillis() + WAIT_MILLIS;
        while (!condition.getAsBoolean()) {
            assertTrue(System.currentTimeMillis() < deadline, "timed out waiting until " + what);
            Thread.sleep(20);
        }
    }

    private static double rejected(String version, String reasonCode) {
        return ScoringMetrics.get()
                .versionsRejected
                .labelValues("tiny", version, BatchScorer.PATH_LABEL, reasonCode)
                .get();
    }

    @Test
    void newVersionSwapsAndBrokenOnesAreRejected() throws Exception {
        Path tiny = ModelCheckTest.testModel("tiny").resolve("1");
        VersionFolders.copyVersion(tiny, exportDir, 1);
        ModelSpec planned = ModelSpec.read(exportDir);
        ModelWatcher watcher = ModelWatcher.acquire(exportDir, planned, options("1000000"));
        try {
            assertEquals(1, watcher.current().spec.version());

            VersionFolders.copyVersion(tiny, exportDir, 2);
            waitFor(() -> watcher.current().spec.version() == 2, "version 2 serves");

            double changedBefore = rejected("3", ModelWatcher.SIGNATURE_CHANGED);
            VersionFolders.copyVersion(
                    tiny, exportDir, 3, text -> text.replace("\"name\": \"y\"", "\"name\": \"z\""));
            waitFor(() -> rejected("3", ModelWatcher.SIGNATURE_CHANGED) == changedBefore + 1,
                    "version 3 is rejected");
            assertEquals(2, watcher.current().spec.version());

            // Broken versions are staged outside the export directory, so the watcher lists
            // them only once they are complete.
            double loadBefore = rejected("4", ModelWatcher.LOAD_FAILED);
            Path broken = VersionFolders.copyVersion(tiny, staging, 4);
            Files.write(broken.resolve("saved_model.pb"), new byte[] {1, 2, 3});
            VersionFolders.copyVersion(broken, exportDir, 4);
            waitFor(() -> rejected("4", ModelWatcher.LOAD_FAILED) == loadBefore + 1,
                    "version 4 is rejected");
            assertEquals(2, watcher.current().spec.version());

            double budgetBefore = rejected("5", ModelWatcher.OVER_BUDGET);
            Path large = VersionFolders.copyVersion(tiny, staging, 5);
            Files.write(large.resolve("variables").resolve("padding"), new byte[1_000_001]);
            VersionFolders.copyVersion(large, exportDir, 5);
            waitFor(() -> rejected("5", ModelWatcher.OVER_BUDGET) == budgetBefore + 1,
                    "version 5 is rejected");
            assertEquals(2, watcher.current().spec.version());
        } finally {
            ModelWatcher.release(watcher);
        }
    }

    @Test
    void startsAtNewestVersionSincePlanning() throws Exception {
        Path tiny = ModelCheckTest.testModel("tiny").resolve("1");
        VersionFolders.copyVersion(tiny, exportDir, 1);
        ModelSpec planned = ModelSpec.read(exportDir);
        VersionFolders.copyVersion(tiny, exportDir, 2);

        ModelWatcher watcher = ModelWatcher.acquire(exportDir, planned, options("1000000"));
        try {
            assertEquals(2, watcher.current().spec.version());
        } finally {
            ModelWatcher.release(watcher);
        }
    }

    @Test
    void noLoadableVersionIsNamed() throws Exception {
        Path tiny = ModelCheckTest.testModel("tiny").resolve("1");
        Path only = VersionFolders.copyVersion(tiny, exportDir, 1);
        ModelSpec planned = ModelSpec.read(exportDir);
        // The planned version is corrupt by the time the job starts.
        Files.write(only.resolve("saved_model.pb"), new byte[] {1, 2, 3});

        IllegalArgumentException error =
                org.junit.jupiter.api.Assertions.assertThrows(
                        IllegalArgumentException.class,
                        () -> ModelWatcher.acquire(exportDir, planned, options("1000000")));
        assertTrue(error.getMessage().contains("from version 1 on can be loaded"), error.getMessage());
    }

    @Test
    void changedSignatureIsDescribed() throws Exception {
        Path tiny = ModelCheckTest.testModel("tiny").resolve("1");
        ModelSpec planned = ModelSpec.read(tiny);
        assertNull(ModelWatcher.signatureDifference(planned, planned));

        Path copy = VersionFolders.copyVersion(tiny, exportDir, 1, text -> text.replace("\"float32\"", "\"float64\""));
        String difference = ModelWatcher.signatureDifference(planned, ModelSpec.read(copy));
        assertTrue(difference.contains("x float32[-1]"), difference);
        assertTrue(difference.contains("x float64[-1]"), difference);
    }
}
