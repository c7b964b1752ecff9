package io.pyscoring.metrics;

import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.Metric;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Flink metric reporter that serves the backlog gauges of Flink sources on pyscoring's Prometheus
 * endpoint of the same JVM.
 *
 * <p>It exports three of Flink's gauges and ignores every other metric:
 *
 * <ul>
 *   <li>{@code pendingRecords} of a source reader (FLIP-33, set through {@code
 *       SourceReaderMetricGroup#setPendingRecordsGauge}), as {@value #PENDING_RECORDS}. The Kafka
 *       source sets it to the sum of its partitions' lag.
 *   <li>{@code pendingBytes} of a source reader, as {@value #PENDING_BYTES}. The {@code
 *       pyscoring-lines} source sets it.
 *   <li>{@code records-lag-max} of the Kafka source's consumer (group {@code
 *       KafkaSourceReader.KafkaConsumer}), as {@value #RECORDS_LAG_MAX}.
 * </ul>
 *
 * <p>Each series has the labels {@code job_name}, {@code operator_name} and {@code
 * subtask_index}, taken from Flink's scope variables. A series disappears when Flink removes the
 * metric, which it does when the source task ends.
 *
 * <p>Flink's own {@code PrometheusReporter} (2.3.0) binds every network interface and has no host
 * option. This reporter adds its gauges to the registry of {@link ScoringMetrics} instead, whose
 * endpoint binds {@code metrics.host} and is recorded in the job's targets file by the scorer. With
 * the options {@code host} and {@code port-range} set, the reporter starts that endpoint itself
 * when the first source gauge is registered, so a job without a scorer is served too. Configure
 * it as
 *
 * <pre>
 * metrics.reporter.pyscoring.factory.class: io.pyscoring.metrics.SourceBacklogReporterFactory
 * metrics.reporter.pyscoring.host: 127.0.0.1
 * metrics.reporter.pyscoring.port-range: 9250-9299
 * </pre>
 */
public final class SourceBacklogReporter implements MetricReporter {

    static final String PENDING_RECORDS = "pyscoring_source_pending_records";
    static final String PENDING_BYTES = "pyscoring_source_pending_bytes";
    static final String RECORDS_LAG_MAX = "pyscoring_source_records_lag_max";

    /** Prometheus label names, in the order of {@link #labelValues}. */
    static final String[] LABELS = {"job_name", "operator_name", "subtask_index"};

    private static final Logger LOG = LoggerFactory.getLogger(SourceBacklogReporter.class);

    private final BacklogGauges gauges;
    private final List<Series> added = new ArrayList<>();
    private String host = "127.0.0.1";
    private int firstPort = -1;
    private int lastPort = -1;
    private boolean endpointChecked;

    public SourceBacklogReporter() {
        this(BacklogGauges.get());
    }

    SourceBacklogReporter(BacklogGauges gauges) {
        this.gauges = gauges;
    }

    /**
     * Reads the options {@code host} (default 127.0.0.1) and {@code port-range} (FIRST-LAST, empty
     * by default: the reporter starts no endpoint).
     *
     * @throws IllegalArgumentException if {@code port-range} is not FIRST-LAST within 1-65535
     */
    @Override
    public void open(MetricConfig config) {
        host = config.getString("host", host);
        String range = config.getString("port-range", "").trim();
        if (!range.isEmpty()) {
            int[] ports = parsePortRange(range);
            firstPort = ports[0];
            lastPort = ports[1];
        }
        LOG.info(
                "Started the source backlog reporter; it serves its gauges on {}",
                firstPort < 0
                        ? "the endpoint that a scorer of this JVM starts"
                        : host + ":" + range + ", starting the endpoint at the first source gauge");
    }

    static int[] parsePortRange(String range) {
        String[] parts = range.split("-");
        try {
            if (parts.length == 2) {
                int first = Integer.parseInt(parts[0].trim());
                int last = Integer.parseInt(parts[1].trim());
                if (1 <= first && first <= last && last <= 65535) {
                    return new int[] {first, last};
                }
            }
        } catch (NumberFormatException e) {
            // Reported below with the expected form.
        }
        throw new IllegalArgumentException(
                "Invalid port-range "
                        + range
                        + " of the source backlog reporter; expected FIRST-LAST within 1-65535,"
                        + " such as 9250-9299");
    }

    @Override
    public void close() {
        synchronized (added) {
            for (Series series : added) {
                gauges.remove(series);
            }
            added.clear();
        }
        LOG.info("Stopped the source backlog reporter");
    }

    @Override
    public void notifyOfAddedMetric(Metric metric, String metricName, MetricGroup group) {
        Series series = Series.of(metric, metricName, group);
        if (series == null) {
            return;
        }
        gauges.add(series);
        synchronized (added) {
            added.add(series);
        }
        LOG.debug("Serving {} of {}", series.name, Arrays.toString(series.labelValues));
        startEndpointOnce();
    }

    @Override
    public void notifyOfRemovedMetric(Metric metric, String metricName, MetricGroup group) {
        Series series = Series.of(metric, metricName, group);
        if (series == null) {
            return;
        }
        gauges.remove(series);
        synchronized (added) {
            added.removeIf(known -> known.gauge == series.gauge && known.name.equals(series.name));
        }
    }

    private synchronized void startEndpointOnce() {
        if (endpointChecked || firstPort < 0) {
            return;
        }
        endpointChecked = true;
        try {
            ScoringMetrics.get().startServer(host, firstPort, lastPort, "");
        } catch (RuntimeException e) {
            LOG.warn(
                    "Failed to start the Prometheus endpoint for the source backlog gauges on {}:{}-{}; "
                            + "they are served only once a scorer in this JVM starts it: {}",
                    host,
                    firstPort,
                    lastPort,
                    e.toString());
        }
    }

    /** One exported Flink gauge: its Prometheus name, label values and the gauge itself. */
    static final class Series {
        final String name;
        final String[] labelValues;
        final Gauge<?> gauge;

        Series(String name, String[] labelValues, Gauge<?> gauge) {
            this.name = name;
            this.labelValues = labelValues;
            this.gauge = gauge;
        }

        /** Returns the series of an exported gauge, or null for every other metric. */
        static Series of(Metric metric, String metricName, MetricGroup group) {
            if (!(metric instanceof Gauge)) {
                return null;
            }
            Map<String, String> variables = group.getAllVariables();
            if (!variables.containsKey("<operator_name>")) {
                return null;
            }
            String name = prometheusName(metricName, group.getScopeComponents());
            if (name == null) {
                return null;
            }
            return new Series(name, labelValues(variables), (Gauge<?>) metric);
        }

        private static String prometheusName(String metricName, String[] scope) {
            switch (metricName) {
                case "pendingRecords":
                    return PENDING_RECORDS;
                case "pendingBytes":
                    return PENDING_BYTES;
                case "records-lag-max":
                    int length = scope.length;
                    boolean kafkaConsumer =
                            length >= 2
                                    && "KafkaSourceReader".equals(scope[length - 2])
                                    && "KafkaConsumer".equals(scope[length - 1]);
                    return kafkaConsumer ? RECORDS_LAG_MAX : null;
                default:
                    return null;
            }
        }

        private static String[] labelValues(Map<String, String> variables) {
            return new String[] {
                variables.getOrDefault("<job_name>", ""),
                variables.getOrDefault("<operator_name>", ""),
                variables.getOrDefault("<subtask_index>", ""),
            };
        }

        List<String> key() {
            return Arrays.asList(labelValues);
        }
    }

    /**
     * The exported gauges of one JVM, registered once in {@link ScoringMetrics}' registry.
     *
     * <p>Every reporter instance of the JVM (one per mini cluster or task manager) adds its series
     * here. A series with the label values of an existing one replaces it, so a restarted subtask
     * does not produce a duplicate series while its old metrics are still being removed.
     */
    static final class BacklogGauges {

        private static BacklogGauges instance;

        private final Map<String, Map<List<String>, Gauge<?>>> seriesByName = new ConcurrentHashMap<>();

        BacklogGauges(PrometheusRegistry registry) {
            register(registry, PENDING_RECORDS,
                    "Records a Flink source has not read yet (Flink's pendingRecords)");
            register(registry, PENDING_BYTES,
                    "Bytes a Flink source has not read yet in its assigned splits (Flink's pendingBytes)");
            register(registry, RECORDS_LAG_MAX,
                    "Largest lag in records over the Kafka source consumer's partitions (records-lag-max)");
        }

        static synchronized BacklogGauges get() {
            if (instance == null) {
                instance = new BacklogGauges(ScoringMetrics.get().registry());
            }
            return instance;
        }

        private void register(PrometheusRegistry registry, String name, String help) {
            Map<List<String>, Gauge<?>> series = new ConcurrentHashMap<>();
            seriesByName.put(name, series);
            GaugeWithCallback.builder()
                    .name(name)
                    .help(help)
                    .labelNames(LABELS)
                    .callback(
                            callback -> {
                                for (Map.Entry<List<String>, Gauge<?>> entry : series.entrySet()) {
                                    Double value = valueOf(entry.getValue());
                                    if (value != null) {
                                        callback.call(value, entry.getKey().toArray(new String[0]));
                                    }
                                }
                            })
                    .register(registry);
        }

        void add(Series series) {
            seriesByName.get(series.name).put(series.key(), series.gauge);
        }

        void remove(Series series) {
            seriesByName.get(series.name).remove(series.key(), series.gauge);
        }

        /** Returns the current values by label values, for tests. */
        Map<List<String>, Double> values(String name) {
            Map<List<String>, Double> values = new java.util.HashMap<>();
            seriesByName.get(name).forEach((key, gauge) -> values.put(key, valueOf(gauge)));
            return values;
        }

        /** Returns a gauge's value as a double, or null when it has none or is not a number. */
        private static Double valueOf(Gauge<?> gauge) {
            Object value;
            try {
                value = gauge.getValue();
            } catch (RuntimeException e) {
                LOG.debug("Gauge {} failed to return a value: {}", gauge, e.toString());
                return null;
            }
            if (value instanceof Number) {
                return ((Number) value).doubleValue();
            }
            return null;
        }
    }
}
