package io.pyscoring.scoring;

import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.apache.flink.types.Row;

/**
 * The rows of one micro-batch: their input values column by column, each row's future and the
 * time it entered the scorer. Reused from batch to batch; see {@link MicroBatcher} for which
 * thread owns it when.
 */
final class InputBatch {

    final ColumnBuffer[] columns;
    final CompletableFuture<Collection<Row>>[] futures;
    final long[] enqueuedNanos;
    int size;
    long openedNanos;

    @SuppressWarnings("unchecked")
    InputBatch(List<TensorSpec> inputs, int capacity) {
        columns = new ColumnBuffer[inputs.size()];
        for (int i = 0; i < columns.length; i++) {
            columns[i] = ColumnBuffer.create(inputs.get(i).type(), capacity);
        }
        futures = new CompletableFuture[capacity];
        enqueuedNanos = new long[capacity];
    }

    int capacity() {
        return futures.length;
    }

    /** Appends one row; the caller checked that the batch is not full and no value is null. */
    void add(Object[] values, int firstValue, CompletableFuture<Collection<Row>> future, long nowNanos) {
        if (size == 0) {
            openedNanos = nowNanos;
        }
        for (int i = 0; i < columns.length; i++) {
            columns[i].set(size, values[firstValue + i]);
        }
        futures[size] = future;
        enqueuedNanos[size] = nowNanos;
        size++;
    }

    void reset() {
        for (ColumnBuffer column : columns) {
            column.clear(size);
        }
        java.util.Arrays.fill(futures, 0, size, null);
        size = 0;
    }
}
