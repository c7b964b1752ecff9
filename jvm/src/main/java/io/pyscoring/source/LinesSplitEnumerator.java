package io.pyscoring.source;

import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import javax.annotation.Nullable;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.ListIterator;

/**
 * Hands out one split per file to the readers of {@code pyscoring-lines}, one split per request.
 *
 * <p>Readers pull: a reader requests a split when it has none left, so files are read in
 * parallel, each by one subtask, and a fast subtask takes more files. Splits are handed out in
 * file order. In loop mode, when every split of a pass has been assigned, the next request creates
 * the splits of the next pass. Passes can therefore overlap: a subtask can start pass p + 1 while
 * others still read the last files of pass p. Without loop mode, a request that finds no split
 * left gets "no more splits", and the reader finishes.
 *
 * <p>Flink calls every method from the source coordinator thread of the JobManager, so the class
 * needs no locking.
 *
 * <p>Checkpoints: {@link #snapshotState} stores the file list, the unassigned splits and the next
 * pass. A split assigned before the checkpoint is in the state of the reader that owns it. Flink
 * returns a split assigned after the checkpoint through {@link #addSplitsBack} when its reader
 * fails over, and the enumerator hands it out again before any other split.
 */
final class LinesSplitEnumerator implements SplitEnumerator<LinesSplit, LinesEnumeratorState> {

    private static final Logger LOG = LoggerFactory.getLogger(LinesSplitEnumerator.class);

    private final SplitEnumeratorContext<LinesSplit> context;
    private final List<String> files;
    private final boolean loop;
    private final ArrayDeque<LinesSplit> pendingSplits;
    private long nextPass;

    /**
     * Creates an enumerator.
     *
     * @param files qualified paths in reading order
     * @param pendingSplits splits not yet assigned, in assignment order
     * @param nextPass the pass to create when the pending splits run out in loop mode
     */
    LinesSplitEnumerator(
            SplitEnumeratorContext<LinesSplit> context,
            List<String> files,
            boolean loop,
            List<LinesSplit> pendingSplits,
            long nextPass) {
        this.context = context;
        this.files = List.copyOf(files);
        this.loop = loop;
        this.pendingSplits = new ArrayDeque<>(pendingSplits);
        this.nextPass = nextPass;
    }

    /** Returns the splits of every file in the given pass, in file order. */
    static List<LinesSplit> splitsOfPass(List<String> files, long pass) {
        List<LinesSplit> splits = new ArrayList<>(files.size());
        for (String file : files) {
            splits.add(LinesSplit.atStart(file, pass));
        }
        return splits;
    }

    @Override
    public void start() {
        LOG.info(
                "Starting the pyscoring-lines enumerator with {} files, {} pending splits, loop={}",
                files.size(),
                pendingSplits.size(),
                loop);
    }

    @Override
    public void handleSplitRequest(int subtaskId, @Nullable String requesterHostname) {
        if (!context.registeredReaders().containsKey(subtaskId)) {
            // The reader failed after its request. Its restarted instance requests again.
            LOG.debug("Ignoring a split request of subtask {}, which is not registered", subtaskId);
            return;
        }

        LinesSplit split = nextSplit();
        if (split == null) {
            LOG.info("No splits left, signalling the end of input to subtask {}", subtaskId);
            context.signalNoMoreSplits(subtaskId);
            return;
        }
        LOG.debug("Assigning {} to subtask {}", split, subtaskId);
        context.assignSplit(split, subtaskId);
    }

    @Nullable
    private LinesSplit nextSplit() {
        if (pendingSplits.isEmpty() && loop && !files.isEmpty()) {
            LOG.info("Starting pass {} over {} files", nextPass, files.size());
            pendingSplits.addAll(splitsOfPass(files, nextPass));
            nextPass++;
        }
        return pendingSplits.poll();
    }

    @Override
    public void addSplitsBack(List<LinesSplit> splits, int subtaskId) {
        LOG.info("Taking back {} splits of failed subtask {}", splits.size(), subtaskId);
        ListIterator<LinesSplit> iterator = splits.listIterator(splits.size());
        while (iterator.hasPrevious()) {
            pendingSplits.addFirst(iterator.previous());
        }
    }

    @Override
    public void addReader(int subtaskId) {
        // Readers request splits themselves once they have none.
    }

    @Override
    public LinesEnumeratorState snapshotState(long checkpointId) {
        return new LinesEnumeratorState(files, new ArrayList<>(pendingSplits), nextPass);
    }

    @Override
    public void close() {}
}
