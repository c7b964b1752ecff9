package io.pyscoring.scoring;

import java.io.IOException;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * One exported model version as its manifest {@code pyscoring.json} describes it.
 *
 * <p>Reading the manifest needs no TensorFlow, so the planner can derive the scorer's SQL types
 * without loading the native library. After loading, {@link LoadedModel} checks the SavedModel's
 * own signature against this description.
 */
public record ModelSpec(
        Path versionDir,
        String modelName,
        long version,
        List<TensorSpec> inputs,
        List<TensorSpec> outputs,
        long variableBytes)
        implements Serializable {

    public static final String MANIFEST = "pyscoring.json";
    private static final Pattern VERSION_NAME = Pattern.compile("[0-9]+");
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Resolves an export directory or one version folder in it.
     *
     * <p>A folder holding {@code pyscoring.json} is one version. Otherwise the folder is an
     * export directory and the newest complete version, the largest integer folder with a
     * manifest, is taken. Folders without a manifest are exports still being written.
     */
    public static Path resolveVersionDir(Path exportOrVersionDir) {
        if (Files.isRegularFile(exportOrVersionDir.resolve(MANIFEST))) {
            return exportOrVersionDir;
        }
        if (!Files.isDirectory(exportOrVersionDir)) {
            throw new IllegalArgumentException(
                    "Model export directory "
                            + exportOrVersionDir
                            + " does not exist; pass the EXPORT_DIR that `pyscoring train` wrote");
        }
        try (Stream<Path> children = Files.list(exportOrVersionDir)) {
            return children.filter(p -> VERSION_NAME.matcher(p.getFileName().toString()).matches())
                    .filter(p -> Files.isRegularFile(p.resolve(MANIFEST)))
                    .max((a, b) -> Long.compare(versionOf(a), versionOf(b)))
                    .orElseThrow(
                            () ->
                                    new IllegalArgumentException(
                                            "No complete model version in "
                                                    + exportOrVersionDir
                                                    + ": expected a folder <N>/ holding "
                                                    + MANIFEST));
        } catch (IOException e) {
            throw new IllegalArgumentException("Failed to list " + exportOrVersionDir + ": " + e, e);
        }
    }

    private static long versionOf(Path dir) {
        return Long.parseLong(dir.getFileName().toString());
    }

    /**
     * Reads the manifest of the newest version in an export directory, or of one version, after
     * checking that the version's files lie inside the export directory (see {@link
     * #checkInsideExportDir}).
     */
    public static ModelSpec read(Path exportOrVersionDir) {
        Path versionDir = resolveVersionDir(exportOrVersionDir);
        Path exportDir =
                versionDir.equals(exportOrVersionDir)
                        ? versionDir.toAbsolutePath().getParent()
                        : exportOrVersionDir;
        checkInsideExportDir(exportDir, versionDir);
        Path manifest = versionDir.resolve(MANIFEST);
        JsonNode root;
        try {
            root = JSON.readTree(manifest.toFile());
        } catch (IOException e) {
            throw new IllegalArgumentException(
                    "Failed to read the manifest " + manifest + ": " + e.getMessage(), e);
        }
        JsonNode signature = required(root, "signature", manifest);
        return new ModelSpec(
                versionDir,
                required(root, "model_name", manifest).asText(),
                required(root, "version", manifest).asLong(),
                tensors(required(signature, "inputs", manifest), "input", manifest),
                tensors(required(signature, "outputs", manifest), "output", manifest),
                required(required(root, "variables", manifest), "bytes", manifest).asLong());
    }

    /**
     * Checks that the version folder resolves inside {@code exportDir}, and that the manifest,
     * {@code saved_model.pb} and every entry under {@code variables/} and {@code assets/} resolve
     * inside the version folder, following symbolic links. TensorFlow reads those paths, so a
     * link cannot make the scorer load files from elsewhere.
     *
     * @throws IllegalArgumentException naming the path that points outside
     */
    public static void checkInsideExportDir(Path exportDir, Path versionDir) {
        try {
            Path exportReal = exportDir.toRealPath();
            Path versionReal = versionDir.toRealPath();
            requireInside(versionDir, versionReal, exportReal, "export directory");
            for (String name : List.of(MANIFEST, "saved_model.pb", "variables", "assets")) {
                Path entry = versionDir.resolve(name);
                if (!Files.exists(entry, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                    continue;
                }
                requireInside(entry, entry.toRealPath(), versionReal, "version folder");
                if (Files.isDirectory(entry)) {
                    try (Stream<Path> children = Files.walk(entry)) {
                        for (Path child : (Iterable<Path>) children::iterator) {
                            requireInside(child, child.toRealPath(), versionReal, "version folder");
                        }
                    }
                }
            }
        } catch (IOException e) {
            throw new IllegalArgumentException(
                    "Failed to resolve the files of " + versionDir + ": " + e, e);
        }
    }

    private static void requireInside(Path path, Path real, Path root, String rootKind) {
        if (!real.startsWith(root)) {
            throw new IllegalArgumentException(
                    path
                            + " resolves to "
                            + real
                            + ", outside the "
                            + rootKind
                            + " "
                            + root
                            + "; pyscoring loads only files inside the export directory, so copy"
                            + " the files into the version folder instead of linking them");
        }
    }

    private static JsonNode required(JsonNode node, String field, Path manifest) {
        JsonNode value = node.get(field);
        if (value == null || value.isNull()) {
            throw new IllegalArgumentException(
                    "The manifest " + manifest + " has no field '" + field + "'; re-export the model");
        }
        return value;
    }

    private static List<TensorSpec> tensors(JsonNode array, String kind, Path manifest) {
        List<TensorSpec> result = new ArrayList<>();
        for (JsonNode entry : array) {
            String name = required(entry, "name", manifest).asText();
            String field = kind + " '" + name + "' in " + manifest;
            JsonNode shapeNode = required(entry, "shape", manifest);
            long[] shape = new long[shapeNode.size()];
            for (int i = 0; i < shape.length; i++) {
                shape[i] = shapeNode.get(i).asLong();
            }
            result.add(
                    new TensorSpec(
                            name,
                            TensorType.fromManifestName(
                                    required(entry, "dtype", manifest).asText(), field),
                            TensorSpec.widthOf(shape, field)));
        }
        if (result.isEmpty()) {
            throw new IllegalArgumentException("The manifest " + manifest + " lists no " + kind + "s");
        }
        return List.copyOf(result);
    }
}
