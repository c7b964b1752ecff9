package io.pyscoring.metrics;

import io.pyscoring.scoring.ScoringOptions;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.BindException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * pyscoring's Prometheus metrics of one JVM, and the HTTP endpoint that serves them.
 *
 * <p>One instance per JVM: the class sits on the task manager's parent classpath, so every
 * slot and every job of the JVM records into the same registry and one endpoint serves them.
 * The Python scorer declares the same names, label names and bucket bounds with
 * prometheus-client, so dashboards work for both scoring paths.
 */
public final class ScoringMetrics {

    private static final Logger LOG = LoggerFactory.getLogger(ScoringMetrics.class);

    /** Label names of every pyscoring metric: model name, model version, scoring path. */
    public static final String[] LABELS = {"model", "version", "path"};

    /**
     * Upper bounds in seconds: 0.5 ms to 10 s, about three per decade, because micro-batched
     * scoring spends most rows between 1 and 50 ms and a stalled batch shows up near seconds.
     */
    public static final double[] LATENCY_BUCKETS_SECONDS = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
    };

    /** Upper bounds in rows: powers of two up to 4096. */
    public static final double[] BATCH_SIZE_BUCKETS = {
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096
    };

    private static ScoringMetrics instance;

    public final Histogram predictionLatency;
    public final Histogram batchLatency;
    public final Histogram batchSize;
    public final Counter predictions;
    public final Counter predictionErrors;
    public final Counter deadLetters;
    public final Counter versionsRejected;
    public final Info modelInfo;
    public final Gauge modelLoaded;
    public final Gauge lastSuccessfulBatch;
    public final Histogram endToEndLatency;
    private final PrometheusRegistry registry;
    private HTTPServer server;

    private ScoringMetrics(PrometheusRegistry registry) {
        this.registry = registry;
        predictionLatency =
                Histogram.builder()
                        .name("pyscoring_prediction_latency_seconds")
                        .help("Seconds from a row entering the scorer to its result, queueing included")
                        .labelNames(LABELS)
                        .classicOnly()
                        .classicUpperBounds(LATENCY_BUCKETS_SECONDS)
                        .register(registry);
        batchLatency =
                Histogram.builder()
                        .name("pyscoring_batch_latency_seconds")
                        .help("Seconds one batch spends in TensorFlow, tensor building included")
                        .labelNames(LABELS)
                        .classicOnly()
                        .classicUpperBounds(LATENCY_BUCKETS_SECONDS)
                        .register(registry);
        batchSize =
                Histogram.builder()
                        .name("pyscoring_batch_size")
                        .help("Rows per TensorFlow call")
                        .labelNames(LABELS)
                        .classicOnly()
                        .classicUpperBounds(BATCH_SIZE_BUCKETS)
                        .register(registry);
        predictions =
                Counter.builder()
                        .name("pyscoring_predictions_total")
                        .help("Rows scored successfully")
                        .labelNames(LABELS)
                        .register(registry);
        predictionErrors =
                Counter.builder()
                        .name("pyscoring_prediction_errors_total")
                        .help("Rows that left the scorer with an error instead of a score")
                        .labelNames(append(LABELS, "reason_code"))
                        .register(registry);
        deadLetters =
                Counter.builder()
                        .name("pyscoring_dead_letters_total")
                        .help("Rows written to the dead-letter output, by the reason they were rejected")
                        .labelNames(append(LABELS, "reason_code"))
                        .register(registry);
        versionsRejected =
                Counter.builder()
                        .name("pyscoring_model_versions_rejected_total")
                        .help("New model versions that a running scorer did not swap in, by reason")
                        .labelNames(append(LABELS, "reason_code"))
                        .register(registry);
        modelInfo =
                Info.builder()
                        .name("pyscoring_model_info")
                        .help("Models loaded for scoring, one series per model version")
                        .labelNames(append(LABELS, "tensorflow_version"))
                        .register(registry);
        modelLoaded =
                Gauge.builder()
                        .name("pyscoring_model_loaded")
                        .help("1 while the model version is loaded in this JVM, 0 after it was closed")
                        .labelNames(LABELS)
                        .register(registry);
        lastSuccessfulBatch =
                Gauge.builder()
                        .name("pyscoring_last_successful_batch_timestamp_seconds")
                        .help("Unix time in seconds when a batch last scored at least one row")
                        .labelNames(LABELS)
                        .register(registry);
        endToEndLatency =
                Histogram.builder()
                        .name("pyscoring_end_to_end_latency_seconds")
                        .help("Seconds from a row's event time to its scored row reaching the sink")
                        .labelNames(LABELS)
                        .classicOnly()
                        .classicUpperBounds(LATENCY_BUCKETS_SECONDS)
                        .register(registry);
    }

    private static String[] append(String[] labels, String extra) {
        String[] result = java.util.Arrays.copyOf(labels, labels.length + 1);
        result[labels.length] = extra;
        return result;
    }

    /** Returns the JVM's metrics, creating the registry on first use. Thread-safe. */
    public static synchronized ScoringMetrics get() {
        if (instance == null) {
            instance = new ScoringMetrics(new PrometheusRegistry());
        }
        return instance;
    }

    /**
     * Starts the HTTP endpoint on the first free port of [first, last] unless it runs already,
     * and records it in the targets folder. Thread-safe; returns the bound port.
     *
     * @param targetsFile the file_sd targets file of the job; the endpoint is written into the
     *     folder {@code targetsFile + ".d"} beside it, where deploy collects it. Empty skips it.
     */
    public synchronized int startServer(String host, int first, int last, String targetsFile) {
        if (server == null) {
            for (int port = first; port <= last && server == null; port++) {
                try {
                    server =
                            HTTPServer.builder()
                                    .hostname(host)
                                    .port(port)
                                    .registry(registry)
                                    .buildAndStart();
                    LOG.info("Started the Prometheus endpoint at http://{}:{}/metrics", host, port);
                } catch (BindException e) {
                    LOG.debug("Port {} is taken, trying the next one", port);
                } catch (IOException e) {
                    throw new UncheckedIOException(
                            "Failed to start the Prometheus endpoint on " + host + ":" + port, e);
                }
            }
            if (server == null) {
                throw new IllegalStateException(
                        "No free port for the Prometheus endpoint in "
                                + first
                                + "-"
                                + last
                                + " on "
                                + host
                                + "; widen metrics.port-range");
            }
        }
        if (!targetsFile.isEmpty()) {
            writeEndpointFile(Path.of(targetsFile + ".d"), host, server.getPort());
        }
        return server.getPort();
    }

    /** Starts the endpoint on the host, port range and targets file of {@code options}. */
    public int startServer(ScoringOptions options) {
        return startServer(
                options.metricsHost,
                options.metricsPortFirst,
                options.metricsPortLast,
                options.metricsTargetsFile);
    }

    /** Returns the registry that the endpoint serves, for metrics declared outside this class. */
    public PrometheusRegistry registry() {
        return registry;
    }

    /** Returns the endpoint's port, or -1 when no endpoint runs. */
    public synchronized int port() {
        return server == null ? -1 : server.getPort();
    }

    private static void writeEndpointFile(Path folder, String host, int port) {
        String endpoint = ("0.0.0.0".equals(host) ? "127.0.0.1" : host) + ":" + port;
        try {
            Files.createDirectories(folder);
            Path target = folder.resolve("jvm-" + ProcessHandle.current().pid() + ".json");
            Path temporary = folder.resolve("." + target.getFileName() + ".tmp");
            String json =
                    "{\"target\": \""
                            + endpoint
                            + "\", \"process\": \"jvm\", \"pid\": "
                            + ProcessHandle.current().pid()
                            + "}\n";
            Files.writeString(temporary, json, StandardCharsets.UTF_8);
            Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            LOG.warn("Failed to record the metrics endpoint {} in {}: {}", endpoint, folder, e.toString());
        }
    }
}
