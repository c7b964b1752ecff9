package io.pyscoring.source;

import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.core.fs.FSDataInputStream;
import org.apache.flink.core.fs.FileStatus;
import org.apache.flink.core.fs.FileSystem;
import org.apache.flink.core.fs.Path;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.metrics.Counter;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * Reads the files of its splits line by line and emits one row per line.
 *
 * <p>Rows have the columns {@code source STRING, line_number BIGINT, key STRING, line STRING}:
 * the file name, the 1-based physical line number (every line counts, empty ones too), the key
 * {@code <file name>:<line number>} (with {@code #<pass>} appended for passes after the first in
 * loop mode) and the line without its terminator ("\n" or "\r\n").
 *
 * <p>Lines are decoded as strict UTF-8. A line that is not valid UTF-8 is emitted with {@code
 * line} = NULL and its other columns set as usual, logged at DEBUG and counted in the metric
 * {@value #MALFORMED_LINES_METRIC}. A NULL {@code line} therefore always means malformed UTF-8,
 * and a later stage can route such rows to the dead letters by key. A reader created with {@code
 * emitLineBytes} appends the fifth column {@code line_bytes BYTES}: the undecoded bytes of such a
 * line, and NULL for every line that {@code line} holds.
 *
 * <p>Backlog: the reader reports FLIP-33's {@code pendingBytes} through {@link
 * org.apache.flink.metrics.groups.SourceReaderMetricGroup#setPendingBytesGauge}: the bytes not yet
 * emitted of the splits assigned to this reader, taken from each file's length when the split is
 * added and when it is opened. Files that the enumerator has not assigned yet are not counted, and
 * the line count of a file is unknown before it is read, so no {@code pendingRecords} gauge is set.
 * The value reaches 0 once the last assigned line is emitted.
 *
 * <p>Flink calls every method from the task thread (the mailbox thread of the source task). The
 * reader reads files in that thread with blocking I/O, one line per {@link #pollNext} call, which
 * suits local and network-attached file systems but stalls the task while a remote store is slow.
 *
 * <p>Checkpoints: a row is emitted and the position of its split is advanced in the same call, so
 * {@link #snapshotState} returns, for the split being read, the offset just after the last
 * emitted line and its number. The splits it returns, restored into a new reader, continue with
 * the first line not yet emitted.
 */
final class LinesSourceReader implements SourceReader<RowData, LinesSplit> {

    static final String MALFORMED_LINES_METRIC = "numMalformedUtf8Lines";

    private static final Logger LOG = LoggerFactory.getLogger(LinesSourceReader.class);

    private final SourceReaderContext context;
    private final int bufferSize;
    private final boolean emitLineBytes;
    private final CharsetDecoder decoder =
            StandardCharsets.UTF_8
                    .newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT);
    private final Counter malformedLines;

    private final ArrayDeque<LinesSplit> pendingSplits = new ArrayDeque<>();
    private LinesSplit currentSplit;
    private LineReader lineReader;
    private long currentLineNumber;

    // Remaining bytes of each split in pendingSplits, by split id, and their sum.
    private final Map<String, Long> queuedBytesBySplit = new HashMap<>();
    private long queuedBytes;
    private long currentFileLength;
    // Written by the task thread, read by the metric reporters' threads.
    private volatile long pendingBytes;

    private boolean splitRequested;
    private boolean noMoreSplits;
    private CompletableFuture<Void> availability = CompletableFuture.completedFuture(null);

    LinesSourceReader(SourceReaderContext context) {
        this(context, LineReader.DEFAULT_BUFFER_SIZE);
    }

    /** Creates a reader that reads {@code bufferSize} bytes at once, small in tests. */
    LinesSourceReader(SourceReaderContext context, int bufferSize) {
        this(context, bufferSize, false);
    }

    LinesSourceReader(SourceReaderContext context, int bufferSize, boolean emitLineBytes) {
        this.context = context;
        this.bufferSize = bufferSize;
        this.emitLineBytes = emitLineBytes;
        this.malformedLines = context.metricGroup().counter(MALFORMED_LINES_METRIC);
        context.metricGroup().setPendingBytesGauge(() -> pendingBytes);
    }

    @Override
    public void start() {
        // The first pollNext requests a split unless restored splits are waiting.
    }

    /**
     * Emits the next line of the current split, opening the next split when one ends.
     *
     * @return MORE_AVAILABLE after emitting a row, NOTHING_AVAILABLE while waiting for a split,
     *     END_OF_INPUT after the enumerator signalled that no splits are left
     */
    @Override
    public InputStatus pollNext(ReaderOutput<RowData> output) throws IOException {
        while (true) {
            if (lineReader == null) {
                LinesSplit next = pendingSplits.poll();
                if (next == null) {
                    return waitForSplit();
                }
                open(next);
            }

            if (lineReader.readLine()) {
                currentLineNumber++;
                output.collect(toRow());
                updatePendingBytes();
                return InputStatus.MORE_AVAILABLE;
            }

            LOG.debug("Finished {} after line {}", currentSplit.splitId(), currentLineNumber);
            closeCurrentSplit();
        }
    }

    private InputStatus waitForSplit() {
        if (noMoreSplits) {
            return InputStatus.END_OF_INPUT;
        }
        // Replace the future before the request, so that an assignment delivered during the
        // request completes the future that isAvailable returns.
        if (availability.isDone()) {
            availability = new CompletableFuture<>();
        }
        if (!splitRequested) {
            splitRequested = true;
            context.sendSplitRequest();
        }
        return InputStatus.NOTHING_AVAILABLE;
    }

    private void open(LinesSplit split) throws IOException {
        Path path = new Path(split.path());
        FileSystem fileSystem = path.getFileSystem();
        long fileLength = fileSystem.getFileStatus(path).getLen();
        FSDataInputStream in = fileSystem.open(path);
        try {
            if (split.offset() > 0) {
                in.seek(split.offset());
            }
        } catch (IOException e) {
            in.close();
            throw new IOException(
                    "Failed to seek to byte " + split.offset() + " of " + split.path(), e);
        }
        LOG.debug("Reading {} from byte {}, line {}", split.splitId(), split.offset(),
                split.lineNumber() + 1);
        Long queued = queuedBytesBySplit.remove(split.splitId());
        if (queued != null) {
            queuedBytes -= queued;
        }
        currentFileLength = fileLength;
        currentSplit = split;
        lineReader = new LineReader(in, split.offset(), bufferSize);
        currentLineNumber = split.lineNumber();
        updatePendingBytes();
    }

    private void closeCurrentSplit() throws IOException {
        LineReader finished = lineReader;
        lineReader = null;
        currentSplit = null;
        currentFileLength = 0;
        updatePendingBytes();
        finished.close();
    }

    private void updatePendingBytes() {
        long current = lineReader == null ? 0 : Math.max(0, currentFileLength - lineReader.offset());
        pendingBytes = queuedBytes + current;
    }

    /**
     * Returns the bytes of {@code split}'s file after its offset, or 0 when the file's status
     * cannot be read. {@link #open} reads the status again and fails if it still cannot.
     */
    private static long remainingBytes(LinesSplit split) {
        Path path = new Path(split.path());
        try {
            FileStatus status = path.getFileSystem().getFileStatus(path);
            return Math.max(0, status.getLen() - split.offset());
        } catch (IOException e) {
            LOG.warn("Failed to read the length of {}, counting its split {} as 0 pending bytes "
                    + "until it is opened: {}", split.path(), split.splitId(), e.toString());
            return 0;
        }
    }

    /** Returns the value of the {@code pendingBytes} gauge. */
    long pendingBytes() {
        return pendingBytes;
    }

    private RowData toRow() {
        String fileName = currentSplit.fileName();
        String key = fileName + ":" + currentLineNumber;
        if (currentSplit.pass() > 0) {
            key = key + "#" + currentSplit.pass();
        }
        String line = decode(key);
        if (!emitLineBytes) {
            return GenericRowData.of(
                    StringData.fromString(fileName),
                    currentLineNumber,
                    StringData.fromString(key),
                    line == null ? null : StringData.fromString(line));
        }
        byte[] lineBytes =
                line == null
                        ? Arrays.copyOf(lineReader.lineBytes(), lineReader.lineLength())
                        : null;
        return GenericRowData.of(
                StringData.fromString(fileName),
                currentLineNumber,
                StringData.fromString(key),
                line == null ? null : StringData.fromString(line),
                lineBytes);
    }

    /** Decodes the current line as strict UTF-8, or returns null if it is malformed. */
    private String decode(String key) {
        ByteBuffer bytes = ByteBuffer.wrap(lineReader.lineBytes(), 0, lineReader.lineLength());
        try {
            return decoder.decode(bytes).toString();
        } catch (CharacterCodingException e) {
            malformedLines.inc();
            LOG.debug("Line {} of {} is not valid UTF-8, emitting it with line = NULL: {}",
                    key, currentSplit.path(), e.toString());
            return null;
        }
    }

    /** Returns the split being read at its current position, then the splits not yet opened. */
    @Override
    public List<LinesSplit> snapshotState(long checkpointId) {
        List<LinesSplit> splits = new ArrayList<>(pendingSplits.size() + 1);
        if (currentSplit != null) {
            splits.add(currentSplit.withPosition(lineReader.offset(), currentLineNumber));
        }
        splits.addAll(pendingSplits);
        return splits;
    }

    @Override
    public CompletableFuture<Void> isAvailable() {
        return availability;
    }

    /** Queues splits from the enumerator, or from this reader's state on restore. */
    @Override
    public void addSplits(List<LinesSplit> splits) {
        LOG.debug("Adding splits {}", splits);
        for (LinesSplit split : splits) {
            long remaining = remainingBytes(split);
            Long previous = queuedBytesBySplit.put(split.splitId(), remaining);
            queuedBytes += remaining - (previous == null ? 0 : previous);
        }
        pendingSplits.addAll(splits);
        updatePendingBytes();
        splitRequested = false;
        availability.complete(null);
    }

    @Override
    public void notifyNoMoreSplits() {
        noMoreSplits = true;
        availability.complete(null);
    }

    @Override
    public void close() throws IOException {
        if (lineReader != null) {
            closeCurrentSplit();
        }
    }
}
