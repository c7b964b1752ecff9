package io.pyscoring.source;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;

/**
 * Reads lines as bytes from a stream and counts the byte offset after each line.
 *
 * <p>A line ends at "\n" or at the end of the stream. A "\r" directly before "\n" belongs to the
 * terminator. A lone "\r", including one at the end of the stream, stays part of the line. An
 * empty line is a line. The end of the stream right after a terminator does not start another
 * line, so "a\n" is one line and "a\nb" is two.
 *
 * <p>Not thread-safe. The reader of {@code pyscoring-lines} uses it from the task thread only.
 */
final class LineReader implements Closeable {

    static final int DEFAULT_BUFFER_SIZE = 64 * 1024;

    private final InputStream in;
    private final byte[] buffer;
    private int bufferPosition;
    private int bufferLimit;

    private byte[] line = new byte[256];
    private int lineLength;

    private long offset;

    /**
     * Creates a line reader.
     *
     * @param in stream positioned at {@code startOffset}
     * @param startOffset byte offset of the stream's current position in the file
     * @param bufferSize bytes read from the stream at once
     */
    LineReader(InputStream in, long startOffset, int bufferSize) {
        if (bufferSize < 1) {
            throw new IllegalArgumentException("bufferSize must be at least 1, got " + bufferSize);
        }
        this.in = in;
        this.buffer = new byte[bufferSize];
        this.offset = startOffset;
    }

    /**
     * Reads the next line into {@link #lineBytes()}.
     *
     * @return false at the end of the stream, when no line is left
     */
    boolean readLine() throws IOException {
        lineLength = 0;
        boolean lineStarted = false;
        while (true) {
            if (bufferPosition == bufferLimit) {
                int read = in.read(buffer, 0, buffer.length);
                if (read < 0) {
                    return lineStarted;
                }
                bufferPosition = 0;
                bufferLimit = read;
                continue;
            }

            int newline = indexOfNewline();
            int end = newline < 0 ? bufferLimit : newline;
            append(bufferPosition, end);
            offset += end - bufferPosition;
            bufferPosition = end;
            lineStarted = true;

            if (newline >= 0) {
                bufferPosition++;
                offset++;
                if (lineLength > 0 && line[lineLength - 1] == '\r') {
                    lineLength--;
                }
                return true;
            }
        }
    }

    /** Returns the buffer holding the last line read, valid up to {@link #lineLength()}. */
    byte[] lineBytes() {
        return line;
    }

    /** Returns the byte length of the last line read, without its terminator. */
    int lineLength() {
        return lineLength;
    }

    /** Returns the byte offset just after the last line read, including its terminator. */
    long offset() {
        return offset;
    }

    private int indexOfNewline() {
        for (int i = bufferPosition; i < bufferLimit; i++) {
            if (buffer[i] == '\n') {
                return i;
            }
        }
        return -1;
    }

    private void append(int from, int to) {
        int length = to - from;
        if (lineLength + length > line.length) {
            line = Arrays.copyOf(line, Math.max(line.length * 2, lineLength + length));
        }
        System.arraycopy(buffer, from, line, lineLength, length);
        lineLength += length;
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
