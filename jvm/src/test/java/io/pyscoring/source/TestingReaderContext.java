package io.pyscoring.source;

import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.metrics.groups.SourceReaderMetricGroup;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.apache.flink.util.SimpleUserCodeClassLoader;
import org.apache.flink.util.UserCodeClassLoader;

/** Reader context for tests that counts split requests and runs a callback for each. */
final class TestingReaderContext implements SourceReaderContext {

    private final int subtaskIndex;
    private final int parallelism;
    private final Runnable onSplitRequest;
    private int splitRequests;

    TestingReaderContext() {
        this(0, 1, () -> {});
    }

    TestingReaderContext(int subtaskIndex, int parallelism, Runnable onSplitRequest) {
        this.subtaskIndex = subtaskIndex;
        this.parallelism = parallelism;
        this.onSplitRequest = onSplitRequest;
    }

    int splitRequests() {
        return splitRequests;
    }

    @Override
    public SourceReaderMetricGroup metricGroup() {
        return UnregisteredMetricsGroup.createSourceReaderMetricGroup();
    }

    @Override
    public Configuration getConfiguration() {
        return new Configuration();
    }

    @Override
    public String getLocalHostName() {
        return "localhost";
    }

    @Override
    public int getIndexOfSubtask() {
        return subtaskIndex;
    }

    @Override
    public int currentParallelism() {
        return parallelism;
    }

    @Override
    public void sendSplitRequest() {
        splitRequests++;
        onSplitRequest.run();
    }

    @Override
    public void sendSourceEventToCoordinator(SourceEvent sourceEvent) {
        throw new UnsupportedOperationException("The lines source sends no source events");
    }

    @Override
    public UserCodeClassLoader getUserCodeClassLoader() {
        return SimpleUserCodeClassLoader.create(getClass().getClassLoader());
    }
}
