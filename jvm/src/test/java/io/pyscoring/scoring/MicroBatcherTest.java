package io.pyscoring.scoring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class MicroBatcherTest {

    private static final List<TensorSpec> ONE_LONG =
            List.of(new TensorSpec("n", TensorType.INT64, 0));
    private static final long ONE_HOUR_NANOS = TimeUnit.HOURS.toNanos(1);

    /** Records batch sizes and echoes each row's input back as its output. */
    private static final class EchoHandler implements java.util.function.Consumer<InputBatch> {
        final List<Integer> sizes = Collections.synchronizedList(new ArrayList<>());
        final Set<InputBatch> buffers = Collections.newSetFromMap(new IdentityHashMap<>());
        volatile CountDownLatch release = null;

        @Override
        public void accept(InputBatch batch) {
            if (release != null) {
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            sizes.add(batch.size);
            synchronized (buffers) {
                buffers.add(batch);
            }
            try (var tensor = batch.columns[0].toTensor(0, batch.size)) {
                Object[] values =
                        BatchScorer.readOutput(new TensorSpec("n", TensorType.INT64, 0), tensor, batch.size);
                for (int i = 0; i < batch.size; i++) {
                    batch.futures[i].complete(List.of(Row.of(values[i])));
                }
            }
        }
    }

    private static List<CompletableFuture<Collection<Row>>> addRows(MicroBatcher batcher, int from, int count)
            throws InterruptedException {
        List<CompletableFuture<Collection<Row>>> futures = new ArrayList<>();
        for (long n = from; n < from + count; n++) {
            CompletableFuture<Collection<Row>> future = new CompletableFuture<>();
            batcher.add(new Object[] {"literal", n}, 1, future);
            futures.add(future);
        }
        return futures;
    }

    @Test
    void fullBatchRunsWithoutWaitingForDelay() throws Exception {
        EchoHandler handler = new EchoHandler();
        try (MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 4, ONE_HOUR_NANOS, System::nanoTime, handler)) {
            List<CompletableFuture<Collection<Row>>> futures = addRows(batcher, 0, 8);
            for (CompletableFuture<Collection<Row>> future : futures) {
                // A one-hour delay means only the size limit can close these batches.
                future.get(30, TimeUnit.SECONDS);
            }
            assertEquals(List.of(4, 4), handler.sizes);
        }
    }

    @Test
    void partialBatchRunsAfterDelay() throws Exception {
        EchoHandler handler = new EchoHandler();
        long delayNanos = TimeUnit.MILLISECONDS.toNanos(20);
        try (MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 100, delayNanos, System::nanoTime, handler)) {
            long start = System.nanoTime();
            List<CompletableFuture<Collection<Row>>> futures = addRows(batcher, 0, 3);
            futures.get(2).get(30, TimeUnit.SECONDS);
            long waited = System.nanoTime() - start;
            assertEquals(List.of(3), handler.sizes);
            assertTrue(waited >= delayNanos, "batch ran after " + waited + " ns, before its delay");
        }
    }

    @Test
    void everyRowGetsItsOwnResult() throws Exception {
        EchoHandler handler = new EchoHandler();
        try (MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 7, 0, System::nanoTime, handler)) {
            List<CompletableFuture<Collection<Row>>> futures = addRows(batcher, 0, 1000);
            for (int i = 0; i < futures.size(); i++) {
                Row row = futures.get(i).get(30, TimeUnit.SECONDS).iterator().next();
                assertEquals((long) i, row.getField(0));
            }
            int total = handler.sizes.stream().mapToInt(Integer::intValue).sum();
            assertEquals(1000, total);
            for (int size : handler.sizes) {
                assertTrue(size >= 1, "empty batch");
                assertTrue(size <= 7, "batch of " + size + " rows exceeds the maximum of 7");
            }
        }
    }

    @Test
    void buffersAreReusedAcrossBatches() throws Exception {
        EchoHandler handler = new EchoHandler();
        try (MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 2, 0, System::nanoTime, handler)) {
            List<CompletableFuture<Collection<Row>>> futures = addRows(batcher, 0, 200);
            CompletableFuture.allOf(futures.toArray(CompletableFuture[]::new)).get(30, TimeUnit.SECONDS);
            assertTrue(handler.buffers.size() <= 3, "used " + handler.buffers.size() + " buffers");
        }
    }

    @Test
    void addBlocksWhileAllBuffersAreTaken() throws Exception {
        EchoHandler handler = new EchoHandler();
        handler.release = new CountDownLatch(1);
        try (MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 1, 0, System::nanoTime, handler)) {
            // One batch runs (blocked in the handler), two wait: every buffer is taken.
            addRows(batcher, 0, 3);
            CompletableFuture<Void> fourth =
                    CompletableFuture.runAsync(
                            () -> {
                                try {
                                    addRows(batcher, 3, 1);
                                } catch (InterruptedException e) {
                                    throw new RuntimeException(e);
                                }
                            });
            Thread.sleep(Duration.ofMillis(100).toMillis());
            assertTrue(!fourth.isDone(), "add returned although no buffer was free");
            handler.release.countDown();
            fourth.get(30, TimeUnit.SECONDS);
        }
        assertEquals(4, handler.sizes.size());
    }

    @Test
    void closeScoresRowsAlreadyAdded() throws Exception {
        EchoHandler handler = new EchoHandler();
        List<CompletableFuture<Collection<Row>>> futures;
        MicroBatcher batcher =
                new MicroBatcher("test", ONE_LONG, 100, ONE_HOUR_NANOS, System::nanoTime, handler);
        futures = addRows(batcher, 0, 5);
        batcher.close();
        for (CompletableFuture<Collection<Row>> future : futures) {
            assertTrue(future.isDone());
        }
    }
}
