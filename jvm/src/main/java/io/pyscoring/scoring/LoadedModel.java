package io.pyscoring.scoring;

import io.pyscoring.metrics.ScoringMetrics;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.SessionFunction;
import org.tensorflow.Signature;
import org.tensorflow.TensorFlow;
import org.tensorflow.proto.ConfigProto;

/**
 * A SavedModel version loaded with TensorFlow Java, shared by every scoring subtask of the JVM.
 *
 * <p>{@link #acquire} and {@link #release} count users per version folder and thread settings:
 * the first acquire loads the model, the last release closes it. TensorFlow's session is
 * thread-safe, so subtasks call {@link #function} concurrently.
 */
final class LoadedModel {

    private static final Logger LOG = LoggerFactory.getLogger(LoadedModel.class);
    private static final Map<String, LoadedModel> LOADED = new HashMap<>();
    private static final Map<String, Integer> LOADS_BY_VERSION_DIR = new HashMap<>();

    final ModelSpec spec;
    final SessionFunction function;
    final String tensorFlowVersion;
    private final SavedModelBundle bundle;
    private final String cacheKey;
    private int users;

    private LoadedModel(ModelSpec spec, SavedModelBundle bundle, String cacheKey) {
        this.spec = spec;
        this.bundle = bundle;
        this.cacheKey = cacheKey;
        this.function = bundle.function(Signature.DEFAULT_KEY);
        this.tensorFlowVersion = TensorFlow.version();
    }

    /**
     * Returns how many times this JVM has loaded the SavedModel in {@code versionDir}, an absolute
     * path. The PS scoring path must leave it at zero.
     */
    static synchronized int loadsOf(String versionDir) {
        return LOADS_BY_VERSION_DIR.getOrDefault(versionDir, 0);
    }

    /** Returns the loaded model of {@code spec}, loading it on first use. Thread-safe. */
    static synchronized LoadedModel acquire(ModelSpec spec, ScoringOptions options) {
        long variableBytes = checkBudget(spec, options);
        String key =
                spec.versionDir().toAbsolutePath()
                        + "|"
                        + options.intraOpThreads
                        + "|"
                        + options.interOpThreads;
        LoadedModel model = LOADED.get(key);
        if (model == null) {
            model = load(spec, options, key, variableBytes);
            LOADED.put(key, model);
            LOADS_BY_VERSION_DIR.merge(spec.versionDir().toAbsolutePath().toString(), 1, Integer::sum);
        }
        model.users++;
        return model;
    }

    /**
     * Adds a user to a model that another user holds, as a subtask does when it swaps to the
     * version a {@link ModelWatcher} loaded. Returns false, adding no user, if the model is closed
     * already. Thread-safe.
     */
    static synchronized boolean retain(LoadedModel model) {
        if (model.users == 0) {
            return false;
        }
        model.users++;
        return true;
    }

    /** Drops one user; the last one closes the model and frees its native memory. */
    static synchronized void release(LoadedModel model) {
        model.users--;
        if (model.users == 0) {
            LOADED.remove(model.cacheKey);
            model.bundle.close();
            ScoringMetrics.get()
                    .modelLoaded
                    .labelValues(
                            model.spec.modelName(),
                            String.valueOf(model.spec.version()),
                            BatchScorer.PATH_LABEL)
                    .set(0);
            LOG.info(
                    "Closed model {} version {} ({})",
                    model.spec.modelName(),
                    model.spec.version(),
                    model.spec.versionDir());
        }
    }

    /** Returns the bytes of the version's variables, or throws when they exceed the budget. */
    private static long checkBudget(ModelSpec spec, ScoringOptions options) {
        long variableBytes = variableBytes(spec.versionDir());
        if (variableBytes > options.maxModelBytes) {
            throw new IllegalArgumentException(
                    String.format(
                            "Model %s version %d has %d bytes of variables in %s, above %s=%d;"
                                    + " score it on the PS path (deploy --path ps) or raise the limit",
                            spec.modelName(),
                            spec.version(),
                            variableBytes,
                            spec.versionDir().resolve("variables"),
                            ScoringOptions.MAX_MODEL_BYTES.name(),
                            options.maxModelBytes));
        }
        return variableBytes;
    }

    private static LoadedModel load(
            ModelSpec spec, ScoringOptions options, String key, long variableBytes) {
        long start = System.nanoTime();
        ConfigProto config =
                ConfigProto.newBuilder()
                        .setIntraOpParallelismThreads(options.intraOpThreads)
                        .setInterOpParallelismThreads(options.interOpThreads)
                        .build();
        ModelCheck.checkOps(spec.versionDir());
        SavedModelBundle bundle;
        try {
            bundle =
                    SavedModelBundle.loader(spec.versionDir().toString())
                            .withTags(SavedModelBundle.DEFAULT_TAG)
                            .withConfigProto(config)
                            .load();
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(
                    "Failed to load the SavedModel in "
                            + spec.versionDir()
                            + " with TensorFlow Java "
                            + TensorFlow.version()
                            + ": "
                            + e.getMessage(),
                    e);
        }
        try {
            checkSignature(spec, bundle);
        } catch (RuntimeException e) {
            bundle.close();
            throw e;
        }
        LOG.info(
                "Loaded model {} version {} from {} in {} ms ({} bytes of variables, TensorFlow {})",
                spec.modelName(),
                spec.version(),
                spec.versionDir(),
                (System.nanoTime() - start) / 1_000_000,
                variableBytes,
                TensorFlow.version());
        ScoringMetrics.get()
                .modelLoaded
                .labelValues(
                        spec.modelName(), String.valueOf(spec.version()), BatchScorer.PATH_LABEL)
                .set(1);
        return new LoadedModel(spec, bundle, key);
    }

    /** Checks that the SavedModel's serving signature matches the manifest. */
    private static void checkSignature(ModelSpec spec, SavedModelBundle bundle) {
        Signature signature;
        try {
            signature = bundle.function(Signature.DEFAULT_KEY).signature();
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(
                    "The SavedModel in "
                            + spec.versionDir()
                            + " has no signature '"
                            + Signature.DEFAULT_KEY
                            + "'; export it with that signature key",
                    e);
        }
        checkTensors(spec, "input", spec.inputs(), signature.getInputs());
        checkTensors(spec, "output", spec.outputs(), signature.getOutputs());
    }

    private static void checkTensors(
            ModelSpec spec,
            String kind,
            java.util.List<TensorSpec> expected,
            Map<String, Signature.TensorDescription> actual) {
        for (TensorSpec tensor : expected) {
            Signature.TensorDescription description = actual.get(tensor.name());
            if (description == null) {
                throw new IllegalArgumentException(
                        "The manifest of "
                                + spec.versionDir()
                                + " lists the "
                                + kind
                                + " '"
                                + tensor.name()
                                + "', but the SavedModel signature has only "
                                + actual.keySet()
                                + "; re-export the model");
            }
            if (description.dataType != tensor.type().tensorFlowType) {
                throw new IllegalArgumentException(
                        "The "
                                + kind
                                + " '"
                                + tensor.name()
                                + "' of "
                                + spec.versionDir()
                                + " is "
                                + description.dataType
                                + " in the SavedModel but "
                                + tensor.type().manifestName
                                + " in the manifest; re-export the model");
            }
        }
    }

    /** Sums the sizes of the files under {@code versionDir/variables}. */
    static long variableBytes(Path versionDir) {
        Path variables = versionDir.resolve("variables");
        if (!Files.isDirectory(variables)) {
            return 0;
        }
        try (Stream<Path> files = Files.walk(variables)) {
            return files.filter(Files::isRegularFile)
                    .mapToLong(
                            file -> {
                                try {
                                    return Files.size(file);
                                } catch (IOException e) {
                                    throw new java.io.UncheckedIOException(e);
                                }
                            })
                    .sum();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("Failed to list " + variables, e);
        }
    }
}
