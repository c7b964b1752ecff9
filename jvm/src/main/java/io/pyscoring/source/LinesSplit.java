package io.pyscoring.source;

import org.apache.flink.api.connector.source.SourceSplit;

import java.util.Objects;

/**
 * One file in one pass of the {@code pyscoring-lines} source, with the position reached in it.
 *
 * <p>{@link #offset()} is the byte offset just after the last emitted line (after its line
 * terminator), and {@link #lineNumber()} is the 1-based number of that line, or 0 if no line has
 * been emitted. A reader that resumes the split seeks to the offset and numbers the next line
 * {@code lineNumber + 1}, so a split taken from a checkpoint neither skips nor repeats a line.
 *
 * <p>Instances are immutable. The reader creates a new instance for each checkpoint.
 */
public final class LinesSplit implements SourceSplit {

    private final String path;
    private final String fileName;
    private final long pass;
    private final long offset;
    private final long lineNumber;

    /**
     * Creates a split.
     *
     * @param path qualified path of the file, as {@code org.apache.flink.core.fs.Path#toString()}
     * @param pass 0 for the first pass over the files, p for the p-th repetition in loop mode
     * @param offset byte offset just after the last emitted line, 0 at the start of the file
     * @param lineNumber number of the last emitted line, 0 at the start of the file
     */
    public LinesSplit(String path, long pass, long offset, long lineNumber) {
        this.path = Objects.requireNonNull(path, "path");
        if (pass < 0 || offset < 0 || lineNumber < 0) {
            throw new IllegalArgumentException(
                    "Invalid split of "
                            + path
                            + ": pass, offset and line number must not be negative, got pass="
                            + pass
                            + ", offset="
                            + offset
                            + ", lineNumber="
                            + lineNumber);
        }
        this.fileName = path.substring(path.lastIndexOf('/') + 1);
        this.pass = pass;
        this.offset = offset;
        this.lineNumber = lineNumber;
    }

    /** Returns a split of the first line of {@code path} in the given pass. */
    public static LinesSplit atStart(String path, long pass) {
        return new LinesSplit(path, pass, 0, 0);
    }

    /** Returns a copy of this split positioned after the line {@code lineNumber}. */
    public LinesSplit withPosition(long offset, long lineNumber) {
        return new LinesSplit(path, pass, offset, lineNumber);
    }

    /** Returns the split id, which is unique per file and pass. */
    @Override
    public String splitId() {
        return path + "#" + pass;
    }

    public String path() {
        return path;
    }

    /** Returns the last segment of the path, which is the {@code source} column of each row. */
    public String fileName() {
        return fileName;
    }

    public long pass() {
        return pass;
    }

    public long offset() {
        return offset;
    }

    public long lineNumber() {
        return lineNumber;
    }

    @Override
    public boolean equals(Object other) {
        if (this == other) {
            return true;
        }
        if (!(other instanceof LinesSplit)) {
            return false;
        }
        LinesSplit that = (LinesSplit) other;
        return pass == that.pass
                && offset == that.offset
                && lineNumber == that.lineNumber
                && path.equals(that.path);
    }

    @Override
    public int hashCode() {
        return Objects.hash(path, pass, offset, lineNumber);
    }

    @Override
    public String toString() {
        return "LinesSplit{path="
                + path
                + ", pass="
                + pass
                + ", offset="
                + offset
                + ", lineNumber="
                + lineNumber
                + "}";
    }
}
