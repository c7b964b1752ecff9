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
 *
 * <p>Timeouts: with a row timeout above 0, a timeout thread completes every row that has waited
 * longer than the timeout since it entered {@link #add} through the {@link RowCompleter} with
 * error code {@value #TIMEOUT}, whether the row is still queued or its batch is running in
 * TensorFlow. A row that finds every buffer taken until its deadline is completed the same way
 * without being queued. So is a row that finds every buffer taken while the running batch is
 * past the row timeout, if no buffer frees up within 10 ms. The scoring thread's later result for
 * such a row is dropped, because a future completes once. A batch whose rows have all timed out
 * before it runs is skipped. A handler that throws an exception completes its unfinished rows
 * with error code {@value #SCORER_ERROR}; an {@link Error} fails them, and so the task.
 */
final class MicroBatcher implements AutoCloseable {

    /** Error code of a row that waited longer than the row timeout. */
    static final String TIMEOUT = "TIMEOUT";

    /** Error code of a row whose batch handler threw an exception. */
    static final String SCORER_ERROR = "SCORER_ERROR";

    /**
     * Completes a row with an error row instead of scores, {@code waitedNanos} after the row
     * entered the batcher. Implementations must be thread-safe.
     */
    @FunctionalInterface
    interface RowCompleter {
        void completeWithError(
                CompletableFuture<Collection<Row>> future,
                String errorCode,
                String message,
                long waitedNanos);
    }

    private static final Logger LOG = LoggerFactory.getLogger(MicroBatcher.class);
    private static final int BUFFERS = 3;

    /** How long a row waits for a batch that is past the row timeout before it times out. */
    private static final long STUCK_BATCH_WAIT_NANOS = TimeUnit.MILLISECONDS.toNanos(10);

    private final int maxBatchSize;
    private final long maxDelayNanos;
    private final LongSupplier nanoClock;
    private final Consumer<InputBatch> handler;
    private final long rowTimeoutNanos;
    private final RowCompleter completer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final ArrayDeque<InputBatch> free = new ArrayDeque<>();
    private final ArrayDeque<InputBatch> closed = new ArrayDeque<>();
    private final Thread thread;
    private final Thread timeoutThread;
    private InputBatch open;
    private InputBatch scoring;
    private boolean running = true;
    private long expiredRows;

    /** Creates a batcher without row timeout; rows wait as long as their batch takes. */
    MicroBatcher(
            String name,
            List<TensorSpec> inputs,
            int maxBatchSize,
            long maxDelayNanos,
            LongSupplier nanoClock,
            Consumer<InputBatch> handler) {
        this(name, inputs, maxBatchSize, maxDelayNanos, 0, nanoClock, handler, null);
    }

    /**
     * Creates a batcher and starts its threads.
     *
     * @param rowTimeoutNanos the longest a row may wait from {@link #add} to its result, 0 for no
     *     limit
     * @param completer completes timed-out rows and rows of a failed handler; may be null only
     *     without a row timeout
     */
    MicroBatcher(
            String name,
            List<TensorSpec> inputs,
            int maxBatchSize,
            long maxDelayNanos,
            long rowTimeoutNanos,
            LongSupplier nanoClock,
            Consumer<InputBatch> handler,
            RowCompleter completer) {
        if (maxBatchSize < 1) {
            throw new IllegalArgumentException("maxBatchSize must be at least 1, got " + maxBatchSize);
        }
        if (maxDelayNanos < 0) {
            throw new IllegalArgumentException("maxDelayNanos must not be negative, got " + maxDelayNanos);
        }
        if (rowTimeoutNanos < 0) {
            throw new IllegalArgumentException(
                    "rowTimeoutNanos must not be negative, got " + rowTimeoutNanos);
        }
        if (rowTimeoutNanos > 0 && completer == null) {
            throw new IllegalArgumentException("A row timeout needs a RowCompleter");
        }
        this.maxBatchSize = maxBatchSize;
        this.maxDelayNanos = maxDelayNanos;
        this.rowTimeoutNanos = rowTimeoutNanos;
        this.nanoClock = nanoClock;
        this.handler = handler;
        this.completer = completer;
        for (int i = 0; i < BUFFERS; i++) {
            free.add(new InputBatch(inputs, maxBatchSize));
        }
        thread = new Thread(this::runLoop, name);
        thread.setDaemon(true);
        thread.start();
        if (rowTimeoutNanos > 0) {
            timeoutThread = new Thread(this::timeoutLoop, name + "-timeouts");
            timeoutThread.setDaemon(true);
            timeoutThread.start();
        } else {
            timeoutThread = null;
        }
    }

    /**
     * Adds one row: {@code values[firstValue ..]} hold one value per signature input, none null.
     * Blocks while every batch buffer is taken.
     */
    void add(Object[] values, int firstValue, CompletableFuture<Collection<Row>> future)
            throws InterruptedException {
        add(values, firstValue, future, nanoClock.getAsLong());
    }

    /**
     * Adds one row that entered the scorer at {@code enteredNanos}, from which its timeout runs.
     * Blocks while every batch buffer is taken, at most until the row's deadline; a row still
     * waiting then is completed with {@value #TIMEOUT} and not queued.
     */
    void add(
            Object[] values,
            int firstValue,
            CompletableFuture<Collection<Row>> future,
            long enteredNanos)
            throws InterruptedException {
        lock.lock();
        try {
            boolean waitedForStuckBatch = false;
            while (open == null) {
                if (!running) {
                    throw new IllegalStateException("The batcher is closed");
                }
                open = free.poll();
                if (open != null) {
                    break;
                }
                if (rowTimeoutNanos == 0) {
                    changed.await();
                    continue;
                }
                long now = nanoClock.getAsLong();
                long waitNanos = enteredNanos + rowTimeoutNanos - now;
                if (waitNanos <= 0) {
                    expire(future, now - enteredNanos, "while every batch buffer was taken");
                    return;
                }
                if (scoring != null
                        && scoring.size > 0
                        && now - scoring.enqueuedNanos[0] >= rowTimeoutNanos) {
                    // The running batch is past the row timeout, so this row would likely wait
                    // for it in vain. It waits briefly, which also lets the scoring thread take
                    // the lock if its batch just ended, and then fails, so the task thread
                    // stays responsive.
                    if (!waitedForStuckBatch) {
                        waitedForStuckBatch = true;
                        changed.awaitNanos(Math.min(waitNanos, STUCK_BATCH_WAIT_NANOS));
                        continue;
                    }
                    expire(future, now - enteredNanos,
                            "because the running batch has been in TensorFlow past the row timeout");
                    return;
                }
                changed.awaitNanos(waitNanos);
            }
            open.add(values, firstValue, future, enteredNanos);
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
            if (allTimedOut(batch)) {
                LOG.debug("Skipping a batch of {} rows that all timed out in the queue", batch.size);
                release(batch);
                continue;
            }
            try {
                handler.accept(batch);
            } catch (Exception e) {
                // The handler completes futures itself; this only guards the rows.
                LOG.error("Scoring a batch of {} rows failed; completing its unfinished rows with {}",
                        batch.size, SCORER_ERROR, e);
                long now = nanoClock.getAsLong();
                for (int i = 0; i < batch.size; i++) {
                    if (completer != null) {
                        completer.completeWithError(batch.futures[i], SCORER_ERROR, e.toString(),
                                now - batch.enqueuedNanos[i]);
                    } else {
                        batch.futures[i].completeExceptionally(e);
                    }
                }
            } catch (Error e) {
                LOG.error("Scoring a batch of {} rows failed with an error; failing its rows", batch.size, e);
                for (int i = 0; i < batch.size; i++) {
                    batch.futures[i].completeExceptionally(e);
                }
            }
            release(batch);
        }
    }

    /**
     * Returns whether every row of {@code batch} already has a result. Before the handler runs,
     * only the timeout thread completes rows.
     */
    private static boolean allTimedOut(InputBatch batch) {
        for (int i = 0; i < batch.size; i++) {
            if (!batch.futures[i].isDone()) {
                return false;
            }
        }
        return true;
    }

    /** Returns the buffer of a finished or skipped batch to the free list. */
    private void release(InputBatch batch) {
        lock.lock();
        try {
            scoring = null;
            batch.reset();
            free.add(batch);
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Waits for the next batch to close; returns null once closed and drained. */
    private InputBatch nextBatch() throws InterruptedException {
        lock.lock();
        try {
            while (true) {
                if (!closed.isEmpty()) {
                    scoring = closed.poll();
                    return scoring;
                }
                if (open != null && open.size > 0) {
                    long waitNanos = open.openedNanos + maxDelayNanos - nanoClock.getAsLong();
                    if (waitNanos <= 0 || !running) {
                        scoring = open;
                        open = null;
                        return scoring;
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

    /** Checks the rows in flight a few times per row timeout until the batcher closes. */
    private void timeoutLoop() {
        long tickMillis = Math.max(10, Math.min(1000, TimeUnit.NANOSECONDS.toMillis(rowTimeoutNanos) / 4));
        while (true) {
            try {
                Thread.sleep(tickMillis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            lock.lock();
            try {
                if (!running && scoring == null && closed.isEmpty() && (open == null || open.size == 0)) {
                    return;
                }
                long now = nanoClock.getAsLong();
                expireRows(scoring, now);
                for (InputBatch batch : closed) {
                    expireRows(batch, now);
                }
                expireRows(open, now);
            } finally {
                lock.unlock();
            }
        }
    }

    /** Completes the rows of {@code batch} past their deadline; called with the lock held. */
    private void expireRows(InputBatch batch, long now) {
        if (batch == null) {
            return;
        }
        for (int i = 0; i < batch.size; i++) {
            long waited = now - batch.enqueuedNanos[i];
            if (waited < rowTimeoutNanos) {
                // Rows enter a batch in order, so the later ones are younger still.
                return;
            }
            CompletableFuture<Collection<Row>> future = batch.futures[i];
            if (future != null && !future.isDone()) {
                expire(future, waited, batch == scoring ? "while its batch ran in TensorFlow" : "in the queue");
            }
        }
    }

    private void expire(CompletableFuture<Collection<Row>> future, long waitedNanos, String where) {
        long waitedMillis = TimeUnit.NANOSECONDS.toMillis(waitedNanos);
        long timeoutMillis = TimeUnit.NANOSECONDS.toMillis(rowTimeoutNanos);
        completer.completeWithError(
                future,
                TIMEOUT,
                "no result after "
                        + waitedMillis
                        + " ms "
                        + where
                        + ", above the row timeout of "
                        + timeoutMillis
                        + " ms; raise scoring.batch-timeout-ms or scoring.async-timeout-ms if"
                        + " TensorFlow needs longer",
                waitedNanos);
        expiredRows++;
        if (expiredRows <= 10 || expiredRows % 10_000 == 0) {
            LOG.warn("{} rows timed out so far in {}; the latest waited {} ms {}",
                    expiredRows, thread.getName(), waitedMillis, where);
        }
    }

    /** Scores the rows already added, then stops the scoring and timeout threads. */
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
        if (timeoutThread != null) {
            timeoutThread.interrupt();
            timeoutThread.join(TimeUnit.SECONDS.toMillis(5));
        }
    }
}
