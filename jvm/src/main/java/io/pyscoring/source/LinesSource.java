package io.pyscoring.source;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimitedSourceReader;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.table.data.RowData;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.List;

/**
 * FLIP-27 source behind the {@code pyscoring-lines} connector: reads text files line by line,
 * one split per file, with an optional rate limit and an optional endless loop over the files.
 *
 * <p>{@link LinesSourceReader} describes the rows, {@link LinesSplitEnumerator} the order in which
 * files are handed out, and {@link LinesSplit} the checkpointed position. Bounded unless {@code
 * loop} is set.
 */
public final class LinesSource implements Source<RowData, LinesSplit, LinesEnumeratorState> {

    private static final long serialVersionUID = 1L;

    private static final Logger LOG = LoggerFactory.getLogger(LinesSource.class);

    private final String path;
    private final double rowsPerSecond;
    private final boolean loop;
    private final boolean emitLineBytes;

    /** Creates a source whose rows have the four columns source, line_number, key and line. */
    public LinesSource(String path, double rowsPerSecond, boolean loop) {
        this(path, rowsPerSecond, loop, false);
    }

    /**
     * Creates a source.
     *
     * @param path file or folder to read, see {@link LinesSourceOptions#PATH}
     * @param rowsPerSecond rate limit for the whole source, 0 for none
     * @param loop whether to read the files again and again, forever
     * @param emitLineBytes whether rows have the fifth column {@code line_bytes}, see {@link
     *     LinesSourceReader}
     */
    public LinesSource(String path, double rowsPerSecond, boolean loop, boolean emitLineBytes) {
        if (!(rowsPerSecond >= 0) || Double.isInfinite(rowsPerSecond)) {
            throw new IllegalArgumentException(
                    "rowsPerSecond must be a finite number >= 0, got " + rowsPerSecond);
        }
        this.path = path;
        this.rowsPerSecond = rowsPerSecond;
        this.loop = loop;
        this.emitLineBytes = emitLineBytes;
    }

    public String path() {
        return path;
    }

    public double rowsPerSecond() {
        return rowsPerSecond;
    }

    public boolean loop() {
        return loop;
    }

    public boolean emitLineBytes() {
        return emitLineBytes;
    }

    @Override
    public Boundedness getBoundedness() {
        return loop ? Boundedness.CONTINUOUS_UNBOUNDED : Boundedness.BOUNDED;
    }

    /**
     * Lists the files and creates the enumerator. Flink calls it on the JobManager at job start.
     *
     * @throws InvalidSourcePathException if the path does not exist, which fails the job without
     *     restarts
     */
    @Override
    public SplitEnumerator<LinesSplit, LinesEnumeratorState> createEnumerator(
            SplitEnumeratorContext<LinesSplit> context) throws Exception {
        List<String> files = SourceFiles.list(path, loop);
        if (files.isEmpty()) {
            LOG.warn("Path {} contains no files to read, so the source emits no rows", path);
        }
        LOG.info("Reading {} files from {}", files.size(), path);
        return new LinesSplitEnumerator(
                context, files, loop, LinesSplitEnumerator.splitsOfPass(files, 0), 1);
    }

    /**
     * Restores the enumerator from a checkpoint, with the file list taken at job start. Flink calls
     * it on the JobManager when a job restarts from a checkpoint or savepoint.
     */
    @Override
    public SplitEnumerator<LinesSplit, LinesEnumeratorState> restoreEnumerator(
            SplitEnumeratorContext<LinesSplit> context, LinesEnumeratorState state) {
        return new LinesSplitEnumerator(
                context, state.files(), loop, state.pendingSplits(), state.nextPass());
    }

    /**
     * Creates the reader of one subtask. Flink calls it on the TaskManager when the source task
     * starts. With a rate limit, each subtask gets {@code rowsPerSecond / parallelism}.
     *
     * <p>NOTE: a subtask without a split leaves its share unused, so a bounded source with fewer
     * files than subtasks stays below the configured rate.
     */
    @Override
    public SourceReader<RowData, LinesSplit> createReader(SourceReaderContext context) {
        LinesSourceReader reader =
                new LinesSourceReader(context, LineReader.DEFAULT_BUFFER_SIZE, emitLineBytes);
        if (rowsPerSecond == 0) {
            return reader;
        }
        RateLimiterStrategy<LinesSplit> strategy = RateLimiterStrategy.perSecond(rowsPerSecond);
        return new RateLimitedSourceReader<>(
                reader, strategy.createRateLimiter(context.currentParallelism()));
    }

    @Override
    public SimpleVersionedSerializer<LinesSplit> getSplitSerializer() {
        return LinesSplitSerializer.INSTANCE;
    }

    @Override
    public SimpleVersionedSerializer<LinesEnumeratorState> getEnumeratorCheckpointSerializer() {
        return LinesEnumeratorStateSerializer.INSTANCE;
    }
}
