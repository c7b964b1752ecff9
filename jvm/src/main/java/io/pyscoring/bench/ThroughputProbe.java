package io.pyscoring.bench;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.UUID;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code bench_probe(out_dir, key)}: counts the rows that reach a sink and records when they
 * arrived, so a benchmark can measure throughput from the first to the last output row instead
 * of over the job's wall time. Returns TRUE.
 *
 * <p>Each subtask records the time of its first row, of its last row and of every
 * {@value #MARK_EVERY}th row. A key of the form {@code @<nanos>}, written by {@link StampKey}
 * earlier in the same JVM, also gives the row's latency from that point to here. On close the
 * subtask writes {@code out_dir/probe-<random>.json}. Times are {@link System#nanoTime()} of the
 * task manager's JVM, so the files of one job can be merged.
 */
public class ThroughputProbe extends ScalarFunction {

    private static final long serialVersionUID = 1L;

    /** Rows between two recorded marks. */
    static final int MARK_EVERY = 4096;

    private transient long count;
    private transient long firstNanos;
    private transient long lastNanos;
    private transient long[] marks;
    private transient int markCount;
    private transient long[] latencies;
    private transient int latencyCount;
    private transient String outDir;

    @Override
    public void open(FunctionContext context) {
        count = 0;
        marks = new long[1024];
        markCount = 0;
        latencies = new long[1 << 16];
        latencyCount = 0;
    }

    public Boolean eval(String outDir, String key) {
        long now = System.nanoTime();
        if (count == 0) {
            this.outDir = outDir;
            firstNanos = now;
        }
        count++;
        lastNanos = now;
        if (count % MARK_EVERY == 0) {
            if (markCount == marks.length) {
                marks = Arrays.copyOf(marks, marks.length * 2);
            }
            marks[markCount++] = now;
        }
        if (key != null && key.length() > 1 && key.charAt(0) == '@') {
            if (latencyCount == latencies.length) {
                latencies = Arrays.copyOf(latencies, latencies.length * 2);
            }
            latencies[latencyCount++] = now - Long.parseLong(key, 1, key.length(), 10);
        }
        return Boolean.TRUE;
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }

    @Override
    public void close() {
        if (count == 0 || outDir == null) {
            return;
        }
        StringBuilder json = new StringBuilder();
        json.append(
                String.format(
                        Locale.ROOT,
                        "{\"rows\": %d, \"first_nanos\": %d, \"last_nanos\": %d, \"mark_every\": %d,"
                                + " \"marks\": [",
                        count,
                        firstNanos,
                        lastNanos,
                        MARK_EVERY));
        for (int i = 0; i < markCount; i++) {
            json.append(i == 0 ? "" : ", ").append(marks[i]);
        }
        json.append("], \"latency_nanos\": [");
        for (int i = 0; i < latencyCount; i++) {
            json.append(i == 0 ? "" : ", ").append(latencies[i]);
        }
        json.append("]}\n");
        Path file = Path.of(outDir, "probe-" + UUID.randomUUID() + ".json");
        try {
            Files.createDirectories(file.getParent());
            Files.writeString(file, json, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("Failed to write the probe file " + file, e);
        }
    }
}
