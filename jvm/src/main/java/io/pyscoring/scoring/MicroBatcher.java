package io.pyscoring.scoring;

import java.util.ArrayDeque;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Groups rows into batches of at most {@code maxBatchSize} rows and runs each batch on one
 * scoring thread.
 *
 * <p>A batch closes when it is full, or when {@code maxDelayNanos} have passed since its first
 * row, whichever comes first. With a delay of 0 a batch closes as soon as the scoring thread is
 * free, so batches larger than one row form only while a previous batch runs.
 *
 * <p>Threads: {@link #add} is called by the Flink task thread (the async operator's mailbox
 * thread). The handler runs on the batcher's own thread, one batch at a time, and must complete
 * every future of the batch. Three batch buffers rotate: one filling, one running, one closed and
 * waiting; when all three are taken, {@link #add} blocks until the running batch finishes, which
 * backpressures the task. Flink's limit on rows in flight keeps that wait short.
 */
final class MicroBatcher implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(MicroBatcher.class);
    private static final int BUFFERS = 3;

    private final int maxBatchSize;
    private final long maxDelayNanos;
    private final LongSupplier nanoClock;
    private final Consumer<InputBatch> handler;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final ArrayDeque<InputBatch> free = new ArrayDeque<>();
    private final ArrayDeque<InputBatch> closed = new ArrayDeque<>();
    private final Thread thread;
    private InputBatch open;
    private boolean running = true;

    MicroBatcher(
            String name,
            List<TensorSpec> inputs,
            int maxBatchSize,
            long maxDelayNanos,
            LongSupplier nanoClock,
            Consumer<InputBatch> handler) {
        if (maxBatchSize < 1) {
            throw new IllegalArgumentException("maxBatchSize must be at least 1, got " + maxBatchSize);
        }
        if (maxDelayNanos < 0) {
            throw new IllegalArgumentException("maxDelayNanos must not be negative, got " + maxDelayNanos);
        }
        this.maxBatchSize = maxBatchSize;
        this.maxDelayNanos = maxDelayNanos;
        this.nanoClock = nanoClock;
        this.handler = handler;
        for (int i = 0; i < BUFFERS; i++) {
            free.add(new InputBatch(inputs, maxBatchSize));
        }
        thread = new Thread(this::runLoop, name);
        thread.setDaemon(true);
        thread.start();
    }

    /**
     * Adds one row: {@code values[firstValue ..]} hold one value per signature input, none null.
     * Blocks while every batch buffer is taken.
     */
    void add(Object[] values, int firstValue, CompletableFuture<Collection<Row>> future)
            throws InterruptedException {
        lock.lock();
        try {
            while (open == null) {
                if (!running) {
                    throw new IllegalStateException("The batcher is closed");
                }
                open = free.poll();
                if (open == null) {
                    changed.await();
                }
            }
            open.add(values, firstValue, future, nanoClock.getAsLong());
            if (open.size == maxBatchSize) {
                closed.add(open);
                open = null;
                changed.signalAll();
            } else if (open.size == 1) {
                // The scoring thread starts the batch's delay from its first row.
                changed.signalAll();
            }
        } finally {
            lock.unlock();
        }
    }

    private void runLoop() {
        while (true) {
            InputBatch batch;
            try {
                batch = nextBatch();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            if (batch == null) {
                return;
            }
            try {
                handler.accept(batch);
            } catch (Throwable t) {
                // The handler completes futures itself; this only guards the thread.
                LOG.error("Scoring a batch of {} rows failed", batch.size, t);
                for (int i = 0; i < batch.size; i++) {
                    batch.futures[i].completeExceptionally(t);
                }
            }
            lock.lock();
            try {
                batch.reset();
                free.add(batch);
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }
    }

    /** Waits for the next batch to close; returns null once closed and drained. */
    private InputBatch nextBatch() throws InterruptedException {
        lock.lock();
        try {
            while (true) {
                if (!closed.isEmpty()) {
                    return closed.poll();
                }
                if (open != null && open.size > 0) {
                    long waitNanos = open.openedNanos + maxDelayNanos - nanoClock.getAsLong();
                    if (waitNanos <= 0 || !running) {
                        InputBatch batch = open;
                        open = null;
                        return batch;
                    }
                    changed.awaitNanos(waitNanos);
                } else if (!running) {
                    return null;
                } else {
                    changed.await();
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** Scores the rows already added, then stops the scoring thread. */
    @Override
    public void close() throws InterruptedException {
        lock.lock();
        try {
            running = false;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        thread.join(TimeUnit.SECONDS.toMillis(60));
        if (thread.isAlive()) {
            LOG.warn("The scoring thread {} did not stop within 60 s; interrupting it", thread.getName());
            thread.interrupt();
        }
    }
}
