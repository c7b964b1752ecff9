package io.pyscoring.metrics;

import java.util.Properties;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;

/**
 * Creates the {@link SourceBacklogReporter}, named in Flink's configuration as {@code
 * metrics.reporter.<name>.factory.class: io.pyscoring.metrics.SourceBacklogReporterFactory}.
 * Flink finds it through {@code META-INF/services} on the lib folder's classpath.
 */
public final class SourceBacklogReporterFactory implements MetricReporterFactory {

    @Override
    public MetricReporter createMetricReporter(Properties properties) {
        return new SourceBacklogReporter();
    }
}
