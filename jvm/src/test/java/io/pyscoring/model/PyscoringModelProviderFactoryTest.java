package io.pyscoring.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.Schema;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.CatalogModel;
import org.apache.flink.table.catalog.Column;
import org.apache.flink.table.catalog.ObjectIdentifier;
import org.apache.flink.table.catalog.ResolvedCatalogModel;
import org.apache.flink.table.catalog.ResolvedSchema;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.ml.AsyncPredictRuntimeProvider;
import org.apache.flink.table.ml.ModelProvider;
import org.apache.flink.table.types.DataType;
import org.apache.flink.util.ExceptionUtils;
import org.junit.jupiter.api.Test;

/** Checks the options and declared columns that the 'pyscoring' model provider accepts. */
class PyscoringModelProviderFactoryTest {

    private static final ObjectIdentifier MODEL =
            ObjectIdentifier.of("default_catalog", "default_database", "tiny");

    static String tinyExport() throws URISyntaxException {
        return Path.of(PyscoringModelProviderFactoryTest.class.getResource("/models/tiny").toURI())
                .toString();
    }

    private static List<Column> tinyInputs() {
        return List.of(
                Column.physical("x", DataTypes.FLOAT()),
                Column.physical("count", DataTypes.BIGINT()),
                Column.physical("label", DataTypes.STRING()));
    }

    private static List<Column> tinyOutputs() {
        return List.of(
                Column.physical("y", DataTypes.FLOAT()),
                Column.physical("pair", DataTypes.ARRAY(DataTypes.FLOAT())));
    }

    private static Map<String, String> options(String... keyValues) throws URISyntaxException {
        Map<String, String> options = new HashMap<>();
        options.put("provider", "pyscoring");
        options.put("path", tinyExport());
        for (int i = 0; i < keyValues.length; i += 2) {
            if (keyValues[i + 1] == null) {
                options.remove(keyValues[i]);
            } else {
                options.put(keyValues[i], keyValues[i + 1]);
            }
        }
        return options;
    }

    /** Creates the provider the way the planner does: found through the 'provider' option. */
    private static ModelProvider create(
            List<Column> inputs, List<Column> outputs, Map<String, String> options) {
        ResolvedSchema inputSchema = ResolvedSchema.of(inputs);
        ResolvedSchema outputSchema = ResolvedSchema.of(outputs);
        CatalogModel model =
                CatalogModel.of(
                        Schema.newBuilder().fromResolvedSchema(inputSchema).build(),
                        Schema.newBuilder().fromResolvedSchema(outputSchema).build(),
                        options,
                        null);
        return FactoryUtil.createModelProvider(
                null,
                MODEL,
                ResolvedCatalogModel.of(model, inputSchema, outputSchema),
                new Configuration(),
                PyscoringModelProviderFactoryTest.class.getClassLoader(),
                true);
    }

    /** Returns the message chain of the error that creating the provider raises. */
    private static String failure(
            List<Column> inputs, List<Column> outputs, Map<String, String> options) {
        ValidationException error =
                assertThrows(ValidationException.class, () -> create(inputs, outputs, options));
        return ExceptionUtils.stringifyException(error);
    }

    private static void assertContains(String text, String expected) {
        assertTrue(text.contains(expected), () -> "expected '" + expected + "' in:\n" + text);
    }

    @Test
    void validModelGivesAsyncProvider() throws Exception {
        ModelProvider provider = create(tinyInputs(), tinyOutputs(), options());
        PyscoringModelProvider pyscoring = assertInstanceOf(PyscoringModelProvider.class, provider);
        assertInstanceOf(AsyncPredictRuntimeProvider.class, provider);
        assertTrue(pyscoring.versionDir().endsWith("tiny/1"), pyscoring.versionDir());
        assertEquals(Map.of(), pyscoring.scoringOverrides());
        assertInstanceOf(PyscoringModelProvider.class, provider.copy());
    }

    @Test
    void missingPathIsRejected() throws Exception {
        String message = failure(tinyInputs(), tinyOutputs(), options("path", null));
        assertContains(message, "path");
    }

    @Test
    void unknownOptionIsRejected() throws Exception {
        String message = failure(tinyInputs(), tinyOutputs(), options("max-batch", "8"));
        assertContains(message, "max-batch");
    }

    @Test
    void nonexistentPathIsNamed() throws Exception {
        String message =
                failure(tinyInputs(), tinyOutputs(), options("path", "/nonexistent/census"));
        assertContains(message, "'path' = '/nonexistent/census'");
        assertContains(message, "does not exist");
    }

    @Test
    void batchSizeBelowOneIsRejected() throws Exception {
        String message = failure(tinyInputs(), tinyOutputs(), options("max-batch-size", "0"));
        assertContains(message, "'max-batch-size' = '0'");
        assertContains(message, "minimum is 1");
    }

    @Test
    void malformedNumberIsRejected() throws Exception {
        String message = failure(tinyInputs(), tinyOutputs(), options("max-batch-delay-ms", "soon"));
        assertContains(message, "max-batch-delay-ms");
    }

    @Test
    void scoringOverridesUseScorerKeys() throws Exception {
        PyscoringModelProvider provider =
                (PyscoringModelProvider)
                        create(
                                tinyInputs(),
                                tinyOutputs(),
                                options(
                                        "max-batch-size", "16",
                                        "max-batch-delay-ms", "0",
                                        "intra-op-threads", "2",
                                        "inter-op-threads", "1",
                                        "max-model-bytes", "1000000"));
        assertEquals(
                Map.of(
                        "scoring.max-batch-size", "16",
                        "scoring.max-batch-delay-ms", "0",
                        "scoring.tensorflow.intra-op-threads", "2",
                        "scoring.tensorflow.inter-op-threads", "1",
                        "scoring.jvm.max-model-bytes", "1000000"),
                provider.scoringOverrides());
    }

    @Test
    void missingInputColumnIsNamed() throws Exception {
        String message =
                failure(tinyInputs().subList(0, 2), tinyOutputs(), options());
        assertContains(message, "no column 'label'");
        assertContains(message, "pyscoring ddl");
    }

    @Test
    void unknownInputColumnIsNamed() throws Exception {
        List<Column> inputs =
                List.of(
                        Column.physical("x", DataTypes.FLOAT()),
                        Column.physical("count", DataTypes.BIGINT()),
                        Column.physical("label", DataTypes.STRING()),
                        Column.physical("z", DataTypes.DOUBLE()));
        String message = failure(inputs, tinyOutputs(), options());
        assertContains(message, "INPUT column 'z' is not a signature input");
    }

    @Test
    void wrongInputTypeNamesExpectedType() throws Exception {
        List<Column> inputs =
                List.of(
                        Column.physical("x", DataTypes.FLOAT()),
                        Column.physical("count", DataTypes.INT()),
                        Column.physical("label", DataTypes.STRING()));
        String message = failure(inputs, tinyOutputs(), options());
        assertContains(message, "INPUT column 'count' is INT");
        assertContains(message, "declare the column as BIGINT");
    }

    @Test
    void inputColumnOrderIsFree() throws Exception {
        List<Column> inputs =
                List.of(
                        Column.physical("label", DataTypes.VARCHAR(10)),
                        Column.physical("x", DataTypes.FLOAT()),
                        Column.physical("count", DataTypes.BIGINT()));
        PyscoringModelProvider provider =
                (PyscoringModelProvider) create(inputs, tinyOutputs(), options());
        assertEquals(List.of(1, 2, 0), toList(provider.binding().featurePositions));
    }

    @Test
    void unknownOutputColumnIsNamed() throws Exception {
        List<Column> outputs = List.of(Column.physical("score", DataTypes.FLOAT()));
        String message = failure(tinyInputs(), outputs, options());
        assertContains(message, "OUTPUT column 'score' is neither a signature output ([y, pair])");
    }

    @Test
    void wrongOutputArrayTypeIsRejected() throws Exception {
        List<Column> outputs = List.of(Column.physical("pair", DataTypes.ARRAY(DataTypes.DOUBLE())));
        String message = failure(tinyInputs(), outputs, options());
        assertContains(message, "OUTPUT column 'pair'");
        assertContains(message, "ARRAY<FLOAT>");
    }

    @Test
    void errorColumnsAreOptionalExtras() throws Exception {
        List<Column> outputs =
                List.of(
                        Column.physical("error", DataTypes.STRING()),
                        Column.physical("y", DataTypes.FLOAT()),
                        Column.physical("model_version", DataTypes.BIGINT()),
                        Column.physical("error_code", DataTypes.STRING()));
        PyscoringModelProvider provider =
                (PyscoringModelProvider) create(tinyInputs(), outputs, options());
        assertTrue(provider.binding().emitsErrors());
        assertEquals(4, provider.binding().outputs.size());
    }

    @Test
    void modelVersionMustBeBigint() throws Exception {
        List<Column> outputs =
                List.of(
                        Column.physical("y", DataTypes.FLOAT()),
                        Column.physical("model_version", DataTypes.INT()));
        DataType expected = DataTypes.BIGINT();
        String message = failure(tinyInputs(), outputs, options());
        assertContains(message, "OUTPUT column 'model_version' is INT; declare it as " + expected);
    }

    private static List<Integer> toList(int[] values) {
        return java.util.Arrays.stream(values).boxed().toList();
    }
}
