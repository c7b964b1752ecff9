package io.pyscoring.source;

import org.apache.flink.api.connector.source.ReaderInfo;
import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.SplitsAssignment;
import org.apache.flink.metrics.groups.SplitEnumeratorMetricGroup;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.function.BiConsumer;

/** Enumerator context for tests that records assignments and end-of-input signals. */
final class TestingEnumeratorContext implements SplitEnumeratorContext<LinesSplit> {

    /** Receives what the enumerator sends to one reader. */
    interface Listener {
        void splitsAssigned(int subtaskId, List<LinesSplit> splits);

        void noMoreSplits(int subtaskId);
    }

    final Map<Integer, List<LinesSplit>> assigned = new HashMap<>();
    final Set<Integer> noMoreSplits = new HashSet<>();
    private final Map<Integer, ReaderInfo> readers = new HashMap<>();
    private final Listener listener;

    TestingEnumeratorContext() {
        this(null);
    }

    TestingEnumeratorContext(Listener listener) {
        this.listener = listener;
    }

    void registerReader(int subtaskId) {
        readers.put(subtaskId, new ReaderInfo(subtaskId, "localhost"));
    }

    void unregisterReader(int subtaskId) {
        readers.remove(subtaskId);
    }

    @Override
    public SplitEnumeratorMetricGroup metricGroup() {
        return UnregisteredMetricsGroup.createSplitEnumeratorMetricGroup();
    }

    @Override
    public void sendEventToSourceReader(int subtaskId, SourceEvent event) {
        throw new UnsupportedOperationException("The lines source sends no source events");
    }

    @Override
    public int currentParallelism() {
        return readers.size();
    }

    @Override
    public Map<Integer, ReaderInfo> registeredReaders() {
        return readers;
    }

    @Override
    public void assignSplits(SplitsAssignment<LinesSplit> newSplitAssignments) {
        newSplitAssignments
                .assignment()
                .forEach(
                        (subtaskId, splits) -> {
                            if (!readers.containsKey(subtaskId)) {
                                throw new IllegalArgumentException(
                                        "Subtask " + subtaskId + " is not registered");
                            }
                            assigned.computeIfAbsent(subtaskId, id -> new ArrayList<>())
                                    .addAll(splits);
                            if (listener != null) {
                                listener.splitsAssigned(subtaskId, splits);
                            }
                        });
    }

    @Override
    public void signalNoMoreSplits(int subtaskId) {
        noMoreSplits.add(subtaskId);
        if (listener != null) {
            listener.noMoreSplits(subtaskId);
        }
    }

    @Override
    public <T> void callAsync(Callable<T> callable, BiConsumer<T, Throwable> handler) {
        throw new UnsupportedOperationException("The lines enumerator runs no async calls");
    }

    @Override
    public <T> void callAsync(
            Callable<T> callable,
            BiConsumer<T, Throwable> handler,
            long initialDelay,
            long period) {
        throw new UnsupportedOperationException("The lines enumerator runs no async calls");
    }

    @Override
    public void runInCoordinatorThread(Runnable runnable) {
        runnable.run();
    }
}
