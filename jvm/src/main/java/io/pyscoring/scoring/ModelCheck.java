package io.pyscoring.scoring;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.types.Row;
import org.tensorflow.TensorFlow;
import org.tensorflow.proto.FunctionDef;
import org.tensorflow.proto.GraphDef;
import org.tensorflow.proto.MetaGraphDef;
import org.tensorflow.proto.NodeDef;
import org.tensorflow.proto.OpDef;
import org.tensorflow.proto.SavedModel;

/**
 * Checks of a SavedModel version before it is scored: the ops its graph needs against the ops
 * that TensorFlow Java's runtime registers, a full load, and scores of sample rows.
 *
 * <p>Deploy calls {@link #preflight} in Flink's client JVM before it submits a job, so a bad
 * model fails the command instead of the job. {@code pyscoring check} calls {@link #report} in a
 * JVM hosted by JPype. Both entry points take and return plain strings, so any JVM bridge can
 * call them.
 */
public final class ModelCheck {

    static final String SAVED_MODEL_FILE = "saved_model.pb";
    private static final ObjectMapper JSON = new ObjectMapper();

    private ModelCheck() {}

    /**
     * Returns how many times the scorers of this JVM have loaded the SavedModel in {@code
     * versionDir}, an absolute path. Pre-flight checks do not count.
     */
    public static int scorerLoads(String versionDir) {
        return LoadedModel.loadsOf(versionDir);
    }

    /**
     * Checks that {@code modelPath} (an export directory or one version folder) can be scored:
     * the manifest, the files staying inside the export directory, the graph's ops, the budget
     * and a full load with the signature compared to the manifest. The model is closed again
     * unless a running scorer of this JVM holds it.
     *
     * @param maxModelBytes the value of {@code scoring.jvm.max-model-bytes}
     * @return the version folder that was checked
     * @throws IllegalArgumentException with a message that names the path, field or op and the fix
     */
    public static String preflight(String modelPath, long maxModelBytes) {
        ModelSpec spec = ModelSpec.read(Path.of(modelPath));
        ScoringOptions options =
                ScoringOptions.fromMap(
                        Map.of(ScoringOptions.MAX_MODEL_BYTES.name(), String.valueOf(maxModelBytes)));
        LoadedModel model = LoadedModel.acquire(spec, options);
        LoadedModel.release(model);
        return spec.versionDir().toString();
    }

    /**
     * Returns the names of the ops that the graph of the {@code serve} meta graph and its function
     * library use, without the names of the library's own functions.
     *
     * @throws IllegalArgumentException if {@code saved_model.pb} is missing or not a SavedModel
     */
    static Set<String> graphOps(Path versionDir) {
        MetaGraphDef metaGraph = serveMetaGraph(versionDir);
        GraphDef graph = metaGraph.getGraphDef();
        Set<String> functions = new TreeSet<>();
        for (FunctionDef function : graph.getLibrary().getFunctionList()) {
            functions.add(function.getSignature().getName());
        }
        Set<String> ops = new TreeSet<>();
        for (NodeDef node : graph.getNodeList()) {
            ops.add(node.getOp());
        }
        for (FunctionDef function : graph.getLibrary().getFunctionList()) {
            for (NodeDef node : function.getNodeDefList()) {
                ops.add(node.getOp());
            }
        }
        ops.removeAll(functions);
        return ops;
    }

    /** Returns the ops of {@link #graphOps} that TensorFlow Java's runtime does not register. */
    static Set<String> missingOps(Path versionDir) {
        Set<String> registered = registeredOps();
        Set<String> missing = new TreeSet<>(graphOps(versionDir));
        missing.removeAll(registered);
        return missing;
    }

    static Set<String> registeredOps() {
        Set<String> names = new TreeSet<>();
        for (OpDef op : TensorFlow.registeredOpList().getOpList()) {
            names.add(op.getName());
        }
        return names;
    }

    /**
     * Throws when the graph needs an op that TensorFlow Java's runtime lacks, naming the ops,
     * the runtime version and the fix.
     */
    static void checkOps(Path versionDir) {
        Set<String> missing = missingOps(versionDir);
        if (!missing.isEmpty()) {
            throw new IllegalArgumentException(
                    "The graph of "
                            + versionDir.resolve(SAVED_MODEL_FILE)
                            + " uses the ops "
                            + missing
                            + ", which the TensorFlow "
                            + TensorFlow.version()
                            + " runtime of TensorFlow Java does not register; export the model"
                            + " without these ops (or with ops that TensorFlow "
                            + TensorFlow.version()
                            + " has)");
        }
    }

    private static MetaGraphDef serveMetaGraph(Path versionDir) {
        Path file = versionDir.resolve(SAVED_MODEL_FILE);
        SavedModel savedModel;
        try (InputStream in = Files.newInputStream(file)) {
            savedModel = SavedModel.parseFrom(in);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new IllegalArgumentException(
                    "The version folder "
                            + versionDir
                            + " has no "
                            + SAVED_MODEL_FILE
                            + "; re-export the model",
                    e);
        } catch (IOException e) {
            throw new IllegalArgumentException(
                    file
                            + " is not a valid SavedModel ("
                            + e.getMessage()
                            + "); the file is corrupt or was not written by TensorFlow, so"
                            + " re-export the model",
                    e);
        }
        for (MetaGraphDef metaGraph : savedModel.getMetaGraphsList()) {
            if (metaGraph.getMetaInfoDef().getTagsList().contains("serve")) {
                return metaGraph;
            }
        }
        throw new IllegalArgumentException(
                file
                        + " has no meta graph with the tag 'serve' (it has "
                        + savedModel.getMetaGraphsCount()
                        + " meta graphs); export the model with the tag 'serve'");
    }

    /**
     * Checks a version and scores sample rows with it; returns a JSON report.
     *
     * <p>{@code rowsJson} maps each signature input to a list of values, all lists of one
     * length. The report has {@code tensorflow_version}, {@code version_dir}, {@code ops} (the
     * graph's ops), {@code missing_ops}, and then either {@code outputs} (each signature output
     * to one value or array per row, with {@code errors} per row, null for a scored row) or
     * {@code error}, the message of the first check that failed.
     */
    public static String report(String modelPath, String rowsJson) throws IOException {
        ObjectNode report = JSON.createObjectNode();
        report.put("tensorflow_version", TensorFlow.version());
        try {
            ModelSpec spec = ModelSpec.read(Path.of(modelPath));
            report.put("version_dir", spec.versionDir().toString());
            Set<String> ops = graphOps(spec.versionDir());
            Set<String> missing = new TreeSet<>(ops);
            missing.removeAll(registeredOps());
            report.set("ops", JSON.valueToTree(ops));
            report.set("missing_ops", JSON.valueToTree(missing));
            LoadedModel model = LoadedModel.acquire(spec, ScoringOptions.defaults());
            try {
                scoreInto(report, model, JSON.readTree(rowsJson));
            } finally {
                LoadedModel.release(model);
            }
        } catch (IllegalArgumentException e) {
            report.put("error", e.getMessage());
        }
        return JSON.writeValueAsString(report);
    }

    private static void scoreInto(ObjectNode report, LoadedModel model, JsonNode rows) {
        List<TensorSpec> inputs = model.spec.inputs();
        int count = -1;
        for (TensorSpec input : inputs) {
            JsonNode column = rows.get(input.name());
            if (column == null || !column.isArray()) {
                throw new IllegalArgumentException(
                        "The sample rows have no list for the input '" + input.name() + "'");
            }
            if (count >= 0 && column.size() != count) {
                throw new IllegalArgumentException(
                        "The sample rows have " + column.size() + " values for '" + input.name()
                                + "' but " + count + " for the inputs before it");
            }
            count = column.size();
        }
        BatchScorer scorer = new BatchScorer(model, System::nanoTime, null);
        InputBatch batch = new InputBatch(inputs, Math.max(count, 1));
        List<CompletableFuture<Collection<Row>>> futures = new ArrayList<>();
        Object[] values = new Object[inputs.size()];
        for (int row = 0; row < count; row++) {
            for (int i = 0; i < inputs.size(); i++) {
                values[i] = jsonValue(inputs.get(i), rows.get(inputs.get(i).name()).get(row));
            }
            CompletableFuture<Collection<Row>> future = new CompletableFuture<>();
            batch.add(values, 0, future, System.nanoTime());
            futures.add(future);
        }
        scorer.score(batch);

        List<TensorSpec> outputs = model.spec.outputs();
        Map<String, ArrayNode> columns = new LinkedHashMap<>();
        for (TensorSpec output : outputs) {
            columns.put(output.name(), JSON.createArrayNode());
        }
        ArrayNode errors = JSON.createArrayNode();
        for (CompletableFuture<Collection<Row>> future : futures) {
            Iterator<Row> result = future.join().iterator();
            Row row = result.next();
            for (int o = 0; o < outputs.size(); o++) {
                columns.get(outputs.get(o).name()).add(JSON.valueToTree(row.getField(o)));
            }
            Object errorCode = row.getField(outputs.size() + 1);
            errors.add(errorCode == null ? null : errorCode + ": " + row.getField(outputs.size() + 2));
        }
        ObjectNode outputNode = JSON.createObjectNode();
        columns.forEach(outputNode::set);
        report.set("outputs", outputNode);
        report.set("errors", errors);
    }

    private static Object jsonValue(TensorSpec input, JsonNode value) {
        return switch (input.type()) {
            case FLOAT32 -> (float) value.asDouble();
            case FLOAT64 -> value.asDouble();
            case INT32 -> value.asInt();
            case INT64 -> value.asLong();
            case BOOL -> value.asBoolean();
            case STRING -> value.asText();
        };
    }
}
