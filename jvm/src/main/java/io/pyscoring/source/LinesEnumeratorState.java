package io.pyscoring.source;

import java.util.List;
import java.util.Objects;

/**
 * Checkpointed state of {@link LinesSplitEnumerator}.
 *
 * <p>It contains the file list taken at job start, so a restored job reads the same files even if
 * the folder changed. It also contains the splits not yet assigned to a reader and, for loop mode,
 * the number of the next pass to create. Splits that a reader owns at the checkpoint are in that
 * reader's state, not here.
 *
 * @param files qualified paths of the files, in reading order
 * @param pendingSplits splits not yet assigned to a reader, in assignment order
 * @param nextPass the pass that the enumerator creates when {@code pendingSplits} runs empty in
 *     loop mode
 */
public record LinesEnumeratorState(
        List<String> files, List<LinesSplit> pendingSplits, long nextPass) {

    public LinesEnumeratorState {
        files = List.copyOf(Objects.requireNonNull(files, "files"));
        pendingSplits = List.copyOf(Objects.requireNonNull(pendingSplits, "pendingSplits"));
    }
}
