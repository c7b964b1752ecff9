package io.pyscoring.scoring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

/** Rows of a batch that outlives the row timeout, and of a handler that throws. */
class MicroBatcherTimeoutTest {

    private static final List<TensorSpec> ONE_LONG =
            List.of(new TensorSpec("n", TensorType.INT64, 0));
    private static final long TIMEOUT_NANOS = TimeUnit.MILLISECONDS.toNanos(200);

    /** Completes a row with Row(errorCode, message), as BatchScorer does with its error rows. */
    private static final MicroBatcher.RowCompleter COMPLETER =
            (future, code, message, waitedNanos) -> future.complete(List.of(Row.of(code, message)));

    /** Echoes each row's value, after waiting for {@code release} when a row holds -1. */
    private static Consumer<InputBatch> echo(CountDownLatch release) {
        return batch -> {
            try (var tensor = batch.columns[0].toTensor(0, batch.size)) {
                Object[] values =
                        BatchScorer.readOutput(new TensorSpec("n", TensorType.INT64, 0), tensor, batch.size);
                for (Object value : values) {
                    if ((Long) value == -1L) {
                        try {
                            release.await();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                }
                for (int i = 0; i < batch.size; i++) {
                    batch.futures[i].complete(List.of(Row.of(values[i])));
                }
            }
        };
    }

    private static CompletableFuture<Collection<Row>> add(MicroBatcher batcher, long value)
            throws InterruptedException {
        CompletableFuture<Collection<Row>> future = new CompletableFuture<>();
        batcher.add(new Object[] {"literal", value}, 1, future);
        return future;
    }

    private static Row result(CompletableFuture<Collection<Row>> future) throws Exception {
        return future.get(10, TimeUnit.SECONDS).iterator().next();
    }

    /**
     * Adds {@code value} until a row comes back scored rather than timed out, for at most 10 s, and
     * returns the last result's first field.
     */
    private static Object firstScored(MicroBatcher batcher, long value) throws Exception {
        Object first = null;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!Long.valueOf(value).equals(first) && System.nanoTime() < deadline) {
            first = result(add(batcher, value)).getField(0);
        }
        return first;
    }

    @Test
    void stuckBatchRowsTimeOut() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        try (MicroBatcher batcher =
                new MicroBatcher(
                        "test", ONE_LONG, 2, 0, TIMEOUT_NANOS, System::nanoTime, echo(release), COMPLETER)) {
            CompletableFuture<Collection<Row>> stuck = add(batcher, -1L);
            List<CompletableFuture<Collection<Row>>> queued = new ArrayList<>();
            for (long n = 1; n <= 3; n++) {
                queued.add(add(batcher, n));
            }

            Row stuckRow = result(stuck);
            assertEquals(MicroBatcher.TIMEOUT, stuckRow.getField(0));
            assertTrue(((String) stuckRow.getField(1)).contains("while its batch ran in TensorFlow"),
                    (String) stuckRow.getField(1));
            for (CompletableFuture<Collection<Row>> future : queued) {
                assertEquals(MicroBatcher.TIMEOUT, result(future).getField(0));
            }

            // Until the released batch returns its buffer, a new row still meets the stuck
            // batch and times out; the first row after that is scored.
            release.countDown();
            assertEquals(7L, firstScored(batcher, 7L));
        }
    }

    @Test
    void batchOfTimedOutRowsIsSkipped() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        List<Long> handled = new CopyOnWriteArrayList<>();
        Consumer<InputBatch> echo = echo(release);
        Consumer<InputBatch> recording = batch -> {
            try (var tensor = batch.columns[0].toTensor(0, batch.size)) {
                for (Object value :
                        BatchScorer.readOutput(new TensorSpec("n", TensorType.INT64, 0), tensor, batch.size)) {
                    handled.add((Long) value);
                }
            }
            echo.accept(batch);
        };
        try (MicroBatcher batcher =
                new MicroBatcher(
                        "test", ONE_LONG, 2, 0, TIMEOUT_NANOS, System::nanoTime, recording, COMPLETER)) {
            CompletableFuture<Collection<Row>> stuck = add(batcher, -1L);
            long started = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (handled.isEmpty() && System.nanoTime() < started) {
                Thread.sleep(1);
            }
            assertEquals(List.of(-1L), handled);
            // The full batches {1, 2} and {3, 4} queue behind the stuck one.
            List<CompletableFuture<Collection<Row>>> queued = List.of(
                    add(batcher, 1L), add(batcher, 2L), add(batcher, 3L), add(batcher, 4L));
            assertEquals(MicroBatcher.TIMEOUT, result(stuck).getField(0));
            for (CompletableFuture<Collection<Row>> future : queued) {
                assertEquals(MicroBatcher.TIMEOUT, result(future).getField(0));
            }

            release.countDown();
            assertEquals(7L, firstScored(batcher, 7L));
            // The timed-out rows 1 to 4 never reach the handler.
            assertEquals(List.of(-1L, 7L), handled);
        }
    }

    @Test
    void rowWaitingForBufferTimesOutWithoutQueueing() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        try (MicroBatcher batcher =
                new MicroBatcher(
                        "test", ONE_LONG, 1, 0, TIMEOUT_NANOS, System::nanoTime, echo(release), COMPLETER)) {
            // One buffer runs the stuck row; the next two rows fill the other two buffers.
            add(batcher, -1L);
            add(batcher, 1L);
            add(batcher, 2L);
            long start = System.nanoTime();
            CompletableFuture<Collection<Row>> blocked = add(batcher, 3L);
            long waitedMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);

            assertTrue(blocked.isDone(), "add returned before the row had a result");
            Row row = result(blocked);
            assertEquals(MicroBatcher.TIMEOUT, row.getField(0));
            assertTrue(((String) row.getField(1)).contains("every batch buffer was taken"),
                    (String) row.getField(1));
            assertTrue(waitedMillis < 5_000, "add waited " + waitedMillis + " ms");

            // The stuck batch is past the row timeout now, so the next row fails at once.
            start = System.nanoTime();
            Row next = result(add(batcher, 4L));
            waitedMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertEquals(MicroBatcher.TIMEOUT, next.getField(0));
            assertTrue(((String) next.getField(1)).contains("past the row timeout"),
                    (String) next.getField(1));
            assertTrue(waitedMillis < 1_000, "add waited " + waitedMillis + " ms");
            release.countDown();
        }
    }

    @Test
    void handlerExceptionGivesScorerError() throws Exception {
        Consumer<InputBatch> failing =
                batch -> {
                    throw new IllegalStateException("broken handler");
                };
        try (MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 4, 0, 0, System::nanoTime, failing, COMPLETER)) {
            Row row = result(add(batcher, 1L));
            assertEquals(MicroBatcher.SCORER_ERROR, row.getField(0));
            assertTrue(((String) row.getField(1)).contains("broken handler"));
        }
    }
}
