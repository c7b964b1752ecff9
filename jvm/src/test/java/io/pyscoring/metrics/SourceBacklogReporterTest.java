package io.pyscoring.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.metrics.Gauge;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.SimpleCounter;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.junit.jupiter.api.Test;

class SourceBacklogReporterTest {

    /** Returns a metric group with the scope variables of subtask {@code subtask} of a source operator. */
    private static MetricGroup sourceGroup(int subtask, String... extraScope) {
        Map<String, String> variables = new HashMap<>();
        variables.put("<job_name>", "scoring");
        variables.put("<operator_name>", "Source: lines");
        variables.put("<subtask_index>", String.valueOf(subtask));
        String[] scope = new String[3 + extraScope.length];
        scope[0] = "localhost";
        scope[1] = "taskmanager";
        scope[2] = "Source: lines";
        System.arraycopy(extraScope, 0, scope, 3, extraScope.length);
        return new UnregisteredMetricsGroup() {
            @Override
            public Map<String, String> getAllVariables() {
                return variables;
            }

            @Override
            public String[] getScopeComponents() {
                return scope;
            }
        };
    }

    /** Returns subtask index to value of the gauge {@code name} in the registry's scrape. */
    private static Map<String, Double> scrape(PrometheusRegistry registry, String name) {
        Map<String, Double> values = new HashMap<>();
        for (MetricSnapshot snapshot : registry.scrape()) {
            if (snapshot.getMetadata().getPrometheusName().equals(name)) {
                for (GaugeSnapshot.GaugeDataPointSnapshot point :
                        ((GaugeSnapshot) snapshot).getDataPoints()) {
                    assertEquals("scoring", point.getLabels().get("job_name"));
                    assertEquals("Source: lines", point.getLabels().get("operator_name"));
                    values.put(point.getLabels().get("subtask_index"), point.getValue());
                }
            }
        }
        return values;
    }

    @Test
    void pendingBytesFollowTheGauge() {
        PrometheusRegistry registry = new PrometheusRegistry();
        SourceBacklogReporter reporter =
                new SourceBacklogReporter(new SourceBacklogReporter.BacklogGauges(registry));
        reporter.open(new MetricConfig());
        AtomicLong pending = new AtomicLong(100);
        Gauge<Long> gauge = pending::get;

        reporter.notifyOfAddedMetric(gauge, "pendingBytes", sourceGroup(0));
        assertEquals(Map.of("0", 100.0), scrape(registry, SourceBacklogReporter.PENDING_BYTES));

        pending.set(0);
        assertEquals(Map.of("0", 0.0), scrape(registry, SourceBacklogReporter.PENDING_BYTES));

        reporter.notifyOfRemovedMetric(gauge, "pendingBytes", sourceGroup(0));
        assertTrue(scrape(registry, SourceBacklogReporter.PENDING_BYTES).isEmpty());
    }

    @Test
    void kafkaLagAndPendingRecordsExported() {
        PrometheusRegistry registry = new PrometheusRegistry();
        SourceBacklogReporter reporter =
                new SourceBacklogReporter(new SourceBacklogReporter.BacklogGauges(registry));
        reporter.open(new MetricConfig());

        reporter.notifyOfAddedMetric((Gauge<Long>) () -> 42L, "pendingRecords", sourceGroup(1));
        reporter.notifyOfAddedMetric(
                (Gauge<Object>) () -> 17.0,
                "records-lag-max",
                sourceGroup(1, "KafkaSourceReader", "KafkaConsumer"));

        assertEquals(Map.of("1", 42.0), scrape(registry, SourceBacklogReporter.PENDING_RECORDS));
        assertEquals(Map.of("1", 17.0), scrape(registry, SourceBacklogReporter.RECORDS_LAG_MAX));
    }

    @Test
    void otherMetricsIgnored() {
        PrometheusRegistry registry = new PrometheusRegistry();
        SourceBacklogReporter reporter =
                new SourceBacklogReporter(new SourceBacklogReporter.BacklogGauges(registry));
        reporter.open(new MetricConfig());

        reporter.notifyOfAddedMetric((Gauge<Long>) () -> 5L, "records-lag-max", sourceGroup(0));
        reporter.notifyOfAddedMetric(new SimpleCounter(), "pendingBytes", sourceGroup(0));
        reporter.notifyOfAddedMetric((Gauge<Long>) () -> 5L, "numRecordsIn", sourceGroup(0));

        assertTrue(scrape(registry, SourceBacklogReporter.RECORDS_LAG_MAX).isEmpty());
        assertTrue(scrape(registry, SourceBacklogReporter.PENDING_BYTES).isEmpty());
    }

    @Test
    void closeRemovesItsSeries() {
        PrometheusRegistry registry = new PrometheusRegistry();
        SourceBacklogReporter.BacklogGauges gauges = new SourceBacklogReporter.BacklogGauges(registry);
        SourceBacklogReporter reporter = new SourceBacklogReporter(gauges);
        reporter.open(new MetricConfig());
        reporter.notifyOfAddedMetric((Gauge<Long>) () -> 7L, "pendingBytes", sourceGroup(0));

        reporter.close();

        assertTrue(scrape(registry, SourceBacklogReporter.PENDING_BYTES).isEmpty());
    }

    @Test
    void invalidPortRangeRejected() {
        for (String range : new String[] {"9250", "9299-9250", "0-10", "a-b", "1-70000"}) {
            MetricConfig config = new MetricConfig();
            config.setProperty("port-range", range);
            SourceBacklogReporter reporter =
                    new SourceBacklogReporter(
                            new SourceBacklogReporter.BacklogGauges(new PrometheusRegistry()));
            IllegalArgumentException error =
                    assertThrows(IllegalArgumentException.class, () -> reporter.open(config));
            assertTrue(error.getMessage().contains(range), error.getMessage());
        }
    }
}
