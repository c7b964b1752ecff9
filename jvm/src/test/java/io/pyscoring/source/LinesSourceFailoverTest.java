package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.runtime.typeutils.InternalTypeInfo;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.util.CloseableIterator;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Fails a running job once after a checkpoint and checks that the restored job emits every line
 * exactly once, through the checkpoint-aware collect sink of a local MiniCluster.
 */
class LinesSourceFailoverTest {

    private static final int FILES = 3;
    private static final int LINES_PER_FILE = 400;
    private static final int TOTAL_LINES = FILES * LINES_PER_FILE;

    private static final AtomicBoolean FAILED = new AtomicBoolean();
    // Rows the mappers had seen when each checkpoint was taken, by checkpoint id.
    private static final Map<Long, Integer> ROWS_AT_CHECKPOINT = new ConcurrentHashMap<>();
    // Set once a checkpoint that covers at least one row has completed: a restore
    // from it starts past the first line.
    private static final AtomicBoolean CHECKPOINT_WITH_ROWS = new AtomicBoolean();
    private static final AtomicInteger ROWS_BEFORE_FAILURE = new AtomicInteger();
    private static final AtomicInteger ROWS_AFTER_RESTART = new AtomicInteger();

    @TempDir java.nio.file.Path tempDir;

    /**
     * Passes the key on, and throws once after 300 rows when a checkpoint that covers some rows has
     * completed.
     */
    private static final class FailOnceMapper extends RichMapFunction<RowData, String>
            implements CheckpointListener, CheckpointedFunction {

        // Rows this subtask has passed on: all of them precede its next barrier.
        private int rowsSeen;

        @Override
        public String map(RowData row) {
            rowsSeen++;
            if (getRuntimeContext().getTaskInfo().getAttemptNumber() > 0) {
                ROWS_AFTER_RESTART.incrementAndGet();
            } else if (ROWS_BEFORE_FAILURE.incrementAndGet() >= 300
                    && CHECKPOINT_WITH_ROWS.get()
                    && FAILED.compareAndSet(false, true)) {
                throw new IllegalStateException("Failure injected by the test");
            }
            return row.getString(2).toString();
        }

        @Override
        public void snapshotState(FunctionSnapshotContext context) {
            ROWS_AT_CHECKPOINT.merge(context.getCheckpointId(), rowsSeen, Math::max);
        }

        @Override
        public void initializeState(FunctionInitializationContext context) {}

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            if (ROWS_AT_CHECKPOINT.getOrDefault(checkpointId, 0) > 0) {
                CHECKPOINT_WITH_ROWS.set(true);
            }
        }
    }

    @Test
    void restoreAfterFailureEmitsEachLineOnce() throws Exception {
        Set<String> expected = new HashSet<>();
        for (int file = 0; file < FILES; file++) {
            String name = "part-" + file + ".txt";
            StringBuilder text = new StringBuilder();
            for (int line = 1; line <= LINES_PER_FILE; line++) {
                text.append("row ").append(line).append(line % 2 == 0 ? "\r\n" : "\n");
                expected.add(name + ":" + line);
            }
            Files.writeString(tempDir.resolve(name), text);
        }

        Configuration config =
                Configuration.fromMap(
                        Map.of(
                                "parallelism.default", "2",
                                "execution.checkpointing.interval", "30 ms",
                                "restart-strategy.type", "fixed-delay",
                                "restart-strategy.fixed-delay.attempts", "2",
                                "restart-strategy.fixed-delay.delay", "10 ms"));
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(config);
        RowType rowType = (RowType) LinesTableSourceFactory.PRODUCED_TYPE.getLogicalType();
        LinesSource source = new LinesSource(tempDir.toString(), 2000, false);

        List<String> keys = new ArrayList<>();
        try (CloseableIterator<String> rows =
                env.fromSource(
                                source,
                                WatermarkStrategy.noWatermarks(),
                                "lines",
                                InternalTypeInfo.of(rowType))
                        .map(new FailOnceMapper())
                        .returns(Types.STRING)
                        .executeAndCollect()) {
            rows.forEachRemaining(keys::add);
        }

        assertTrue(FAILED.get(), "the injected failure did not happen");
        assertTrue(
                ROWS_AFTER_RESTART.get() < TOTAL_LINES,
                "the restarted job read " + ROWS_AFTER_RESTART.get()
                        + " rows, so it did not resume from a checkpoint");
        assertEquals(TOTAL_LINES, keys.size(), "rows emitted, duplicates included");
        assertEquals(expected, new HashSet<>(keys));
    }
}
