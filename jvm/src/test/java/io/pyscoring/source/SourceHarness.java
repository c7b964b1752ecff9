package io.pyscoring.source;

import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.table.data.RowData;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs one enumerator and several readers of the lines source in the test thread, passing split
 * requests and assignments between them through a queue, as the coordinator does asynchronously.
 */
final class SourceHarness {

    private final ArrayDeque<Runnable> events = new ArrayDeque<>();
    private final LinesSplitEnumerator enumerator;
    private final List<SourceReader<RowData, LinesSplit>> readers = new ArrayList<>();
    private final List<Boolean> finished = new ArrayList<>();
    final CollectingReaderOutput output = new CollectingReaderOutput();

    /**
     * Creates the enumerator with the first pass over {@code files} and {@code parallelism}
     * readers with the given buffer size.
     */
    SourceHarness(List<String> files, boolean loop, int parallelism, int bufferSize) {
        TestingEnumeratorContext context =
                new TestingEnumeratorContext(
                        new TestingEnumeratorContext.Listener() {
                            @Override
                            public void splitsAssigned(int subtaskId, List<LinesSplit> splits) {
                                events.add(() -> readers.get(subtaskId).addSplits(splits));
                            }

                            @Override
                            public void noMoreSplits(int subtaskId) {
                                events.add(() -> readers.get(subtaskId).notifyNoMoreSplits());
                            }
                        });
        enumerator =
                new LinesSplitEnumerator(
                        context, files, loop, LinesSplitEnumerator.splitsOfPass(files, 0), 1);
        enumerator.start();
        for (int subtask = 0; subtask < parallelism; subtask++) {
            int subtaskId = subtask;
            context.registerReader(subtaskId);
            TestingReaderContext readerContext =
                    new TestingReaderContext(
                            subtaskId,
                            parallelism,
                            () -> events.add(() -> enumerator.handleSplitRequest(subtaskId, null)));
            LinesSourceReader reader = new LinesSourceReader(readerContext, bufferSize);
            reader.start();
            readers.add(reader);
            finished.add(false);
        }
    }

    /**
     * Polls the readers in turn, delivering queued events between polls, until every reader
     * reached the end of input or {@code maxRows} rows were emitted.
     */
    void run(int maxRows) throws Exception {
        int idleRounds = 0;
        while (output.rows.size() < maxRows && finished.contains(false)) {
            int rowsBefore = output.rows.size();
            for (int i = 0; i < readers.size() && output.rows.size() < maxRows; i++) {
                if (!finished.get(i) && readers.get(i).isAvailable().isDone()) {
                    InputStatus status = readers.get(i).pollNext(output);
                    finished.set(i, status == InputStatus.END_OF_INPUT);
                }
                while (!events.isEmpty()) {
                    events.poll().run();
                }
            }
            idleRounds = output.rows.size() == rowsBefore ? idleRounds + 1 : 0;
            if (idleRounds > 1000) {
                throw new AssertionError("The readers emitted nothing in 1000 rounds");
            }
        }
    }

    void close() throws Exception {
        for (SourceReader<RowData, LinesSplit> reader : readers) {
            reader.close();
        }
    }
}
