package io.pyscoring.scoring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Pre-flight checks of the committed test models and of broken copies. */
class ModelCheckTest {

    @TempDir Path tempDir;

    static Path testModel(String name) throws Exception {
        return Path.of(ModelCheckTest.class.getResource("/models/" + name).toURI());
    }

    @Test
    void tinyPassesPreflight() throws Exception {
        String versionDir = ModelCheck.preflight(testModel("tiny").toString(), 1L << 30);
        assertTrue(versionDir.endsWith("tiny/1"), versionDir);
        assertTrue(ModelCheck.missingOps(Path.of(versionDir)).isEmpty());
    }

    @Test
    void missingOpIsNamed() throws Exception {
        Path versionDir = testModel("missing_op").resolve("1");
        assertEquals(Set.of("PyscoringTestMissingOp"), ModelCheck.missingOps(versionDir));

        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> ModelCheck.preflight(versionDir.toString(), 1L << 30));
        assertTrue(error.getMessage().contains("PyscoringTestMissingOp"), error.getMessage());
        assertTrue(error.getMessage().contains("does not register"), error.getMessage());
    }

    @Test
    void corruptSavedModelIsNamed() throws Exception {
        Path copy = VersionFolders.copyVersion(testModel("tiny").resolve("1"), tempDir, 1);
        Files.write(copy.resolve("saved_model.pb"), new byte[] {0x0a, (byte) 0xff, 0x01, 0x02});

        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> ModelCheck.preflight(tempDir.toString(), 1L << 30));
        assertTrue(error.getMessage().contains("saved_model.pb is not a valid SavedModel"),
                error.getMessage());
    }

    @Test
    void manifestDtypeMismatchIsNamed() throws Exception {
        Path copy = VersionFolders.copyVersion(testModel("tiny").resolve("1"), tempDir, 1);
        VersionFolders.editManifest(copy, text -> text.replace("\"int64\"", "\"int32\""));

        IllegalArgumentException error =
                assertThrows(
                        IllegalArgumentException.class,
                        () -> ModelCheck.preflight(tempDir.toString(), 1L << 30));
        assertTrue(error.getMessage().contains("'count'"), error.getMessage());
        assertTrue(error.getMessage().contains("re-export the model"), error.getMessage());
    }

    @Test
    void symlinkOutsideExportDirIsRejected() throws Exception {
        Path outside = Files.createDirectories(tempDir.resolve("elsewhere"));
        Path copy = VersionFolders.copyVersion(testModel("tiny").resolve("1"), outside, 1);
        Path exportDir = Files.createDirectories(tempDir.resolve("export"));
        Files.createSymbolicLink(exportDir.resolve("1"), copy);

        IllegalArgumentException error =
                assertThrows(IllegalArgumentException.class, () -> ModelSpec.read(exportDir));
        assertTrue(error.getMessage().contains("outside the export directory"), error.getMessage());
    }

    @Test
    void reportScoresSampleRows() throws Exception {
        String report =
                ModelCheck.report(
                        testModel("tiny").toString(),
                        "{\"x\": [1.5, 0.0], \"count\": [2, -1], \"label\": [\"a\", \"b\"]}");
        JsonNode root = new ObjectMapper().readTree(report);
        assertEquals(6.0, root.get("outputs").get("y").get(0).asDouble(), 1e-6);
        assertTrue(root.get("errors").get(0).isNull());
        assertTrue(root.get("errors").get(1).asText().startsWith("TF_ERROR"));
        assertEquals(0, root.get("missing_ops").size());
        assertTrue(root.get("ops").size() > 5);
    }

    @Test
    void reportOfMissingOpNamesIt() throws Exception {
        String report = ModelCheck.report(testModel("missing_op").toString(), "{}");
        JsonNode root = new ObjectMapper().readTree(report);
        assertEquals("PyscoringTestMissingOp", root.get("missing_ops").get(0).asText());
        assertTrue(root.get("error").asText().contains("PyscoringTestMissingOp"));
    }
}
