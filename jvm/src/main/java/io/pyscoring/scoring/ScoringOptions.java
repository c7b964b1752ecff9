package io.pyscoring.scoring;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * Settings of the Java scorer, read from Flink's global job parameters.
 *
 * <p>The keys, types and defaults mirror the options marked {@code jvm=True} in
 * {@code pyscoring/config.py}; {@code tests/unit/test_config.py} runs {@link #main} and
 * compares the two. Deploy sets every key, so the defaults here apply to SQL users
 * who register the function themselves.
 */
public final class ScoringOptions implements java.io.Serializable {

    private static final long serialVersionUID = 1L;

    /** One key with its default, as a string the way job parameters carry it. */
    public record Key(String name, String type, String defaultValue) {}

    public static final Key MAX_BATCH_SIZE = new Key("scoring.max-batch-size", "int", "64");
    public static final Key MAX_BATCH_DELAY_MS = new Key("scoring.max-batch-delay-ms", "int", "5");
    public static final Key INTRA_OP_THREADS =
            new Key("scoring.tensorflow.intra-op-threads", "int", "0");
    public static final Key INTER_OP_THREADS =
            new Key("scoring.tensorflow.inter-op-threads", "int", "0");
    public static final Key MAX_MODEL_BYTES =
            new Key("scoring.jvm.max-model-bytes", "int", String.valueOf(1024L * 1024 * 1024));
    public static final Key METRICS_HOST = new Key("metrics.host", "str", "127.0.0.1");
    public static final Key METRICS_PORT_RANGE = new Key("metrics.port-range", "str", "9250-9299");
    public static final Key METRICS_TARGETS_FILE = new Key("metrics.targets-file", "str", "");
    public static final Key ASYNC_TIMEOUT_MS = new Key("scoring.async-timeout-ms", "int", "0");
    public static final Key BATCH_TIMEOUT_MS =
            new Key("scoring.batch-timeout-ms", "int", "10000");
    public static final Key WATCH_INTERVAL_MS =
            new Key("scoring.watch-interval-ms", "int", "5000");
    public static final Key TEST_FAIL_AT_ROWS = new Key("scoring.test.fail-at-rows", "str", "");
    public static final Key MAX_FIELD_CHARS = new Key("parse.max-field-chars", "int", "65536");

    /**
     * TensorFlow calls a row may wait for: the running batch, one closed batch queued before the
     * row's own, and the row's own batch.
     */
    static final int BATCHES_PER_ROW_TIMEOUT = 3;

    public static final List<Key> ALL =
            List.of(
                    MAX_BATCH_SIZE,
                    MAX_BATCH_DELAY_MS,
                    INTRA_OP_THREADS,
                    INTER_OP_THREADS,
                    MAX_MODEL_BYTES,
                    METRICS_HOST,
                    METRICS_PORT_RANGE,
                    METRICS_TARGETS_FILE,
                    ASYNC_TIMEOUT_MS,
                    BATCH_TIMEOUT_MS,
                    WATCH_INTERVAL_MS,
                    TEST_FAIL_AT_ROWS,
                    MAX_FIELD_CHARS);

    public final int maxBatchSize;
    public final long maxBatchDelayMs;
    public final int intraOpThreads;
    public final int interOpThreads;
    public final long maxModelBytes;
    public final String metricsHost;
    public final int metricsPortFirst;
    public final int metricsPortLast;
    public final String metricsTargetsFile;

    /** Milliseconds a row may wait for its result before the scorer completes it with TIMEOUT. */
    public final long rowTimeoutMs;

    public final long batchTimeoutMs;

    /** Milliseconds between two scans of the export directory for new versions; 0 disables. */
    public final long watchIntervalMs;

    /** Test-only: per task attempt, the row count at which subtask 0 fails; empty for none. */
    public final List<Long> testFailAtRows;

    public final int maxFieldChars;

    private ScoringOptions(Function<Key, String> lookup) {
        this.maxBatchSize = (int) parseLong(lookup, MAX_BATCH_SIZE, 1);
        this.maxBatchDelayMs = parseLong(lookup, MAX_BATCH_DELAY_MS, 0);
        this.intraOpThreads = (int) parseLong(lookup, INTRA_OP_THREADS, 0);
        this.interOpThreads = (int) parseLong(lookup, INTER_OP_THREADS, 0);
        this.maxModelBytes = parseLong(lookup, MAX_MODEL_BYTES, 1);
        this.metricsHost = lookup.apply(METRICS_HOST);
        String range = lookup.apply(METRICS_PORT_RANGE);
        String[] parts = range.split("-");
        try {
            if (parts.length != 2) {
                throw new NumberFormatException();
            }
            this.metricsPortFirst = Integer.parseInt(parts[0].trim());
            this.metricsPortLast = Integer.parseInt(parts[1].trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    METRICS_PORT_RANGE.name()
                            + ": expected FIRST-LAST such as 9250-9299, got '"
                            + range
                            + "'");
        }
        if (metricsPortFirst < 1 || metricsPortFirst > metricsPortLast || metricsPortLast > 65535) {
            throw new IllegalArgumentException(
                    METRICS_PORT_RANGE.name()
                            + ": '"
                            + range
                            + "' must satisfy 1 <= FIRST <= LAST <= 65535");
        }
        this.metricsTargetsFile = lookup.apply(METRICS_TARGETS_FILE);

        long asyncTimeoutMs = parseLong(lookup, ASYNC_TIMEOUT_MS, 0);
        this.batchTimeoutMs = parseLong(lookup, BATCH_TIMEOUT_MS, 1);
        this.rowTimeoutMs =
                asyncTimeoutMs > 0
                        ? asyncTimeoutMs
                        : maxBatchDelayMs + BATCHES_PER_ROW_TIMEOUT * batchTimeoutMs;
        this.watchIntervalMs = parseLong(lookup, WATCH_INTERVAL_MS, 0);
        this.testFailAtRows = parseRowList(lookup, TEST_FAIL_AT_ROWS);
        this.maxFieldChars = (int) Math.min(Integer.MAX_VALUE, parseLong(lookup, MAX_FIELD_CHARS, 1));
    }

    /** Parses a list of positive row counts separated by ';' (commas separate job parameters). */
    private static List<Long> parseRowList(Function<Key, String> lookup, Key key) {
        String raw = lookup.apply(key);
        List<Long> rows = new ArrayList<>();
        for (String part : raw.split(";")) {
            String trimmed = part.trim();
            if (trimmed.isEmpty()) {
                continue;
            }
            try {
                long value = Long.parseLong(trimmed);
                if (value < 1) {
                    throw new NumberFormatException();
                }
                rows.add(value);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(
                        key.name()
                                + ": expected positive row counts separated by ';' such as"
                                + " 200;200;200, got '"
                                + raw
                                + "'");
            }
        }
        return List.copyOf(rows);
    }

    /** Reads the options from a lookup that returns null for an absent key. */
    public static ScoringOptions fromLookup(Function<String, String> lookup) {
        return new ScoringOptions(
                key -> {
                    String value = lookup.apply(key.name());
                    return value == null ? key.defaultValue() : value.trim();
                });
    }

    public static ScoringOptions fromMap(Map<String, String> values) {
        return fromLookup(values::get);
    }

    public static ScoringOptions defaults() {
        return fromMap(Map.of());
    }

    private static long parseLong(Function<Key, String> lookup, Key key, long min) {
        String raw = lookup.apply(key);
        long value;
        try {
            value = Long.parseLong(raw);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    key.name() + ": expected an integer, got '" + raw + "'");
        }
        if (value < min) {
            throw new IllegalArgumentException(
                    key.name() + ": " + value + " is below the minimum " + min);
        }
        return value;
    }

    /** Prints every key as a JSON array, for the test that compares Java with Python. */
    public static void main(String[] args) {
        StringBuilder json = new StringBuilder("[");
        for (int i = 0; i < ALL.size(); i++) {
            Key key = ALL.get(i);
            if (i > 0) {
                json.append(", ");
            }
            json.append(
                    String.format(
                            "{\"key\": \"%s\", \"type\": \"%s\", \"default\": \"%s\"}",
                            key.name(), key.type(), key.defaultValue()));
        }
        System.out.println(json.append("]"));
    }
}
