package io.pyscoring.scoring;

import io.pyscoring.metrics.ScoringMetrics;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Watches an export directory and keeps its newest acceptable version loaded for the scoring
 * subtasks of this JVM, which swap to it between batches (see {@link PredictFunction}).
 *
 * <p>Every {@code scoring.watch-interval-ms} a background thread lists the complete versions
 * (integer folders that contain {@code pyscoring.json}; the exporter renames a folder into place
 * after writing the manifest, so a listed version is complete). It tries the newest version above
 * the one it serves, then the next older, and accepts the first that passes: its files lie
 * inside the export directory, its signature's inputs and outputs equal those of the version the
 * job was planned with (names, dtypes, shapes and order), its variables fit {@code
 * scoring.jvm.max-model-bytes}, and TensorFlow Java loads it. A version that fails is rejected
 * once: logged, counted in {@code pyscoring_model_versions_rejected_total} with a reason code,
 * and not tried again by this watcher. The version served before keeps serving.
 *
 * <p>One watcher per export directory, planned version and option set runs in a JVM, shared
 * through {@link #acquire} and {@link #release}. The watcher counts as one user of {@link
 * #current()}, so that model stays loaded until a subtask swaps to it.
 */
final class ModelWatcher {

    private static final Logger LOG = LoggerFactory.getLogger(ModelWatcher.class);
    private static final Pattern VERSION_NAME = Pattern.compile("[0-9]+");
    private static final Map<String, ModelWatcher> WATCHERS = new HashMap<>();

    /** Reason codes of a rejected version, the {@code reason_code} label of the metric. */
    static final String INVALID_MANIFEST = "INVALID_MANIFEST";
    static final String SIGNATURE_CHANGED = "SIGNATURE_CHANGED";
    static final String OVER_BUDGET = "OVER_BUDGET";
    static final String LOAD_FAILED = "LOAD_FAILED";

    private final String key;
    private final Path exportDir;
    private final ModelSpec planned;
    private final ScoringOptions options;
    private final Set<Long> rejected = new HashSet<>();
    private final Thread thread;
    private volatile LoadedModel current;
    private volatile boolean stopped;
    private int users;

    private ModelWatcher(String key, Path exportDir, ModelSpec planned, ScoringOptions options) {
        this.key = key;
        this.exportDir = exportDir;
        this.planned = planned;
        this.options = options;
        this.current = loadInitial();
        this.thread = new Thread(this::run, "pyscoring-model-watcher-" + exportDir.getFileName());
        thread.setDaemon(true);
        thread.start();
        LOG.info(
                "Started watching {} every {} ms for versions newer than {}, which serves now",
                exportDir,
                options.watchIntervalMs,
                current.spec.version());
    }

    /**
     * Returns the JVM's watcher of {@code exportDir} for jobs planned with {@code planned},
     * starting it on first use: it loads the newest acceptable version from the planned one on,
     * so a job that restarts later starts with the version it served last. Thread-safe.
     *
     * @throws IllegalArgumentException if no version from the planned one on can be loaded
     */
    static synchronized ModelWatcher acquire(
            Path exportDir, ModelSpec planned, ScoringOptions options) {
        String key =
                exportDir.toAbsolutePath().normalize()
                        + "|"
                        + planned.versionDir().toAbsolutePath()
                        + "|"
                        + options.intraOpThreads
                        + "|"
                        + options.interOpThreads
                        + "|"
                        + options.maxModelBytes
                        + "|"
                        + options.watchIntervalMs;
        ModelWatcher watcher = WATCHERS.get(key);
        if (watcher == null) {
            watcher = new ModelWatcher(key, exportDir, planned, options);
            WATCHERS.put(key, watcher);
        }
        watcher.users++;
        return watcher;
    }

    /** Drops one user; the last one stops the thread and releases the served model. */
    static void release(ModelWatcher watcher) {
        synchronized (ModelWatcher.class) {
            watcher.users--;
            if (watcher.users > 0) {
                return;
            }
            WATCHERS.remove(watcher.key);
            watcher.stopped = true;
        }
        watcher.thread.interrupt();
        try {
            watcher.thread.join(60_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (watcher) {
            LoadedModel.release(watcher.current);
        }
        LOG.info("Stopped watching {}", watcher.exportDir);
    }

    /** The newest accepted version, of which the watcher is one user. */
    LoadedModel current() {
        return current;
    }

    private void run() {
        while (!stopped) {
            try {
                Thread.sleep(options.watchIntervalMs);
            } catch (InterruptedException e) {
                return;
            }
            try {
                poll();
            } catch (RuntimeException e) {
                LOG.error("Scanning {} for new model versions failed; trying again in {} ms",
                        exportDir, options.watchIntervalMs, e);
            }
        }
    }

    /** Loads the newest acceptable version from the planned one on, or throws. */
    private LoadedModel loadInitial() {
        for (long version : versionsAbove(planned.version() - 1)) {
            LoadedModel candidate = tryLoad(exportDir.resolve(Long.toString(version)), version);
            if (candidate != null) {
                return candidate;
            }
        }
        throw new IllegalArgumentException(
                "No version of "
                        + exportDir
                        + " from version "
                        + planned.version()
                        + " on can be loaded (the log names the reason for each); export a new"
                        + " version or deploy the job again");
    }

    /** Swaps to the newest acceptable version above the current one, if there is one. */
    private synchronized void poll() {
        long served = current.spec.version();
        for (long version : versionsAbove(served)) {
            if (stopped) {
                return;
            }
            LoadedModel candidate = tryLoad(exportDir.resolve(Long.toString(version)), version);
            if (candidate != null) {
                LoadedModel previous = current;
                current = candidate;
                LoadedModel.release(previous);
                LOG.info(
                        "Model {} version {} from {} is ready; subtasks swap to it from version {}"
                                + " at their next batch",
                        candidate.spec.modelName(),
                        version,
                        candidate.spec.versionDir(),
                        served);
                return;
            }
        }
    }

    /** Lists the complete versions above {@code served} not rejected before, newest first. */
    private List<Long> versionsAbove(long served) {
        List<Long> versions = new ArrayList<>();
        try (Stream<Path> children = Files.list(exportDir)) {
            children.filter(p -> VERSION_NAME.matcher(p.getFileName().toString()).matches())
                    .filter(p -> Files.isRegularFile(p.resolve(ModelSpec.MANIFEST)))
                    .map(p -> Long.parseLong(p.getFileName().toString()))
                    .filter(v -> v > served && !rejected.contains(v))
                    .forEach(versions::add);
        } catch (IOException e) {
            LOG.warn("Failed to list {} for new model versions: {}", exportDir, e.toString());
        }
        versions.sort(Comparator.reverseOrder());
        return versions;
    }

    /** Loads and checks one version; returns it with one user, or null after rejecting it. */
    private LoadedModel tryLoad(Path versionDir, long version) {
        ModelSpec spec;
        try {
            spec = ModelSpec.read(versionDir);
            ModelSpec.checkInsideExportDir(exportDir, versionDir);
        } catch (RuntimeException e) {
            reject(version, INVALID_MANIFEST, e.getMessage());
            return null;
        }
        String difference = signatureDifference(planned, spec);
        if (difference != null) {
            reject(version, SIGNATURE_CHANGED, difference);
            return null;
        }
        long variableBytes = LoadedModel.variableBytes(versionDir);
        if (variableBytes > options.maxModelBytes) {
            reject(
                    version,
                    OVER_BUDGET,
                    variableBytes
                            + " bytes of variables, above "
                            + ScoringOptions.MAX_MODEL_BYTES.name()
                            + "="
                            + options.maxModelBytes);
            return null;
        }
        LoadedModel model;
        try {
            model = LoadedModel.acquire(spec, options);
        } catch (RuntimeException e) {
            reject(version, LOAD_FAILED, e.getMessage());
            return null;
        }
        warmUp(model);
        return model;
    }

    private void reject(long version, String reasonCode, String reason) {
        rejected.add(version);
        ScoringMetrics.get()
                .versionsRejected
                .labelValues(
                        planned.modelName(), Long.toString(version), BatchScorer.PATH_LABEL, reasonCode)
                .inc();
        LOG.error(
                "Rejected version {} of {} ({}): {}; {}",
                version,
                exportDir,
                reasonCode,
                reason,
                current == null
                        ? "trying older versions"
                        : "version " + current.spec.version() + " keeps serving");
    }

    /** Returns how the signature of {@code candidate} differs from {@code planned}, or null. */
    static String signatureDifference(ModelSpec planned, ModelSpec candidate) {
        if (!planned.inputs().equals(candidate.inputs())) {
            return "the signature inputs changed from "
                    + describe(planned.inputs())
                    + " to "
                    + describe(candidate.inputs())
                    + "; deploy a new job to score a changed signature";
        }
        if (!planned.outputs().equals(candidate.outputs())) {
            return "the signature outputs changed from "
                    + describe(planned.outputs())
                    + " to "
                    + describe(candidate.outputs())
                    + "; deploy a new job to score a changed signature";
        }
        return null;
    }

    private static String describe(List<TensorSpec> tensors) {
        List<String> parts = new ArrayList<>();
        for (TensorSpec tensor : tensors) {
            parts.add(
                    tensor.name()
                            + " "
                            + tensor.type().manifestName
                            + (tensor.width() == 0 ? "[-1]" : "[-1, " + tensor.width() + "]"));
        }
        return parts.toString();
    }

    /** Runs one neutral row so the first batch after a swap pays no setup. */
    private static void warmUp(LoadedModel model) {
        new BatchScorer(model, System::nanoTime, null).warmUp();
    }
}
