package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.flink.core.fs.Path;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.table.data.RowData;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

class LinesSourceReaderTest {

    /** Expected {@code line} column of each line of {@link #writeMixedFile}, null if malformed. */
    private static final List<String> MIXED_LINES =
            List.of("first", "second", "", "third", "", "x", "lone\rcr", "last");

    private static final int MALFORMED_LINE_NUMBER = 6;

    @TempDir java.nio.file.Path tempDir;

    /**
     * Writes a file with LF and CRLF endings, empty lines, a line of invalid UTF-8 (line 6) and a
     * last line without terminator.
     */
    private String writeMixedFile(String name) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        bytes.writeBytes("first\r\nsecond\n\nthird\r\n\r\n".getBytes(StandardCharsets.UTF_8));
        bytes.writeBytes(new byte[] {'x', (byte) 0xC3, '(', '\n'});
        bytes.writeBytes("lone\rcr\nlast".getBytes(StandardCharsets.UTF_8));
        java.nio.file.Path file = tempDir.resolve(name);
        Files.write(file, bytes.toByteArray());
        return new Path(file.toUri()).toString();
    }

    /** Returns the key of a line in the first pass. */
    private static String expectedKey(String fileName, int lineNumber) {
        return fileName + ":" + lineNumber;
    }

    /** Polls until {@code rows} rows were emitted or the reader has nothing more. */
    private static void poll(LinesSourceReader reader, CollectingReaderOutput output, int rows)
            throws IOException {
        int target = output.rows.size() + rows;
        while (output.rows.size() < target) {
            InputStatus status = reader.pollNext(output);
            if (status != InputStatus.MORE_AVAILABLE) {
                return;
            }
        }
    }

    @Test
    void readerEmitsEveryLineWithKey() throws Exception {
        String path = writeMixedFile("mixed.txt");
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext());
        CollectingReaderOutput output = new CollectingReaderOutput();
        reader.addSplits(List.of(LinesSplit.atStart(path, 0)));
        reader.notifyNoMoreSplits();

        poll(reader, output, 100);

        assertEquals(MIXED_LINES.size(), output.rows.size());
        for (int i = 0; i < output.rows.size(); i++) {
            RowData row = output.rows.get(i);
            int lineNumber = i + 1;
            assertEquals("mixed.txt", row.getString(0).toString());
            assertEquals(lineNumber, row.getLong(1));
            assertEquals(expectedKey("mixed.txt", lineNumber), row.getString(2).toString());
            if (lineNumber == MALFORMED_LINE_NUMBER) {
                assertTrue(row.isNullAt(3), "line " + lineNumber + " is invalid UTF-8");
            } else {
                assertEquals(MIXED_LINES.get(i), row.getString(3).toString(), "line " + lineNumber);
            }
        }
        assertEquals(InputStatus.END_OF_INPUT, reader.pollNext(output));
        reader.close();
    }

    @Test
    void lineBytesOnlyForInvalidUtf8() throws Exception {
        String path = writeMixedFile("mixed.txt");
        LinesSourceReader reader =
                new LinesSourceReader(new TestingReaderContext(), LineReader.DEFAULT_BUFFER_SIZE, true);
        CollectingReaderOutput output = new CollectingReaderOutput();
        reader.addSplits(List.of(LinesSplit.atStart(path, 0)));
        reader.notifyNoMoreSplits();

        poll(reader, output, 100);

        assertEquals(MIXED_LINES.size(), output.rows.size());
        for (int i = 0; i < output.rows.size(); i++) {
            RowData row = output.rows.get(i);
            assertEquals(5, row.getArity());
            if (i + 1 == MALFORMED_LINE_NUMBER) {
                assertTrue(row.isNullAt(3));
                org.junit.jupiter.api.Assertions.assertArrayEquals(
                        new byte[] {'x', (byte) 0xC3, '('}, row.getBinary(4));
            } else {
                assertTrue(row.isNullAt(4), "line " + (i + 1) + " is valid UTF-8");
            }
        }
        reader.close();
    }

    /**
     * Checkpoints after every possible number of rows, restores a new reader from the serialized
     * split state, and checks that the rows before the checkpoint plus the rows of the restored
     * reader contain every line exactly once.
     */
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 5, 65536})
    void restoreFromEveryCheckpointEmitsEachLineOnce(int bufferSize) throws Exception {
        String path = writeMixedFile("mixed.txt");
        List<String> allKeys = new ArrayList<>();
        for (int line = 1; line <= MIXED_LINES.size(); line++) {
            allKeys.add(expectedKey("mixed.txt", line));
        }

        for (int rowsBeforeCheckpoint = 0;
                rowsBeforeCheckpoint <= MIXED_LINES.size();
                rowsBeforeCheckpoint++) {
            LinesSourceReader first =
                    new LinesSourceReader(new TestingReaderContext(), bufferSize);
            CollectingReaderOutput beforeCheckpoint = new CollectingReaderOutput();
            first.addSplits(List.of(LinesSplit.atStart(path, 0)));
            first.notifyNoMoreSplits();
            poll(first, beforeCheckpoint, rowsBeforeCheckpoint);
            List<LinesSplit> state = first.snapshotState(1L);

            // Rows emitted after the checkpoint are lost with the failure, so they are not kept.
            poll(first, new CollectingReaderOutput(), 2);
            first.close();

            List<LinesSplit> restoredState = new ArrayList<>();
            for (LinesSplit split : state) {
                byte[] bytes = LinesSplitSerializer.INSTANCE.serialize(split);
                restoredState.add(
                        LinesSplitSerializer.INSTANCE.deserialize(
                                LinesSplitSerializer.VERSION, bytes));
            }
            LinesSourceReader restored =
                    new LinesSourceReader(new TestingReaderContext(), bufferSize);
            CollectingReaderOutput afterRestore = new CollectingReaderOutput();
            restored.addSplits(restoredState);
            restored.notifyNoMoreSplits();
            poll(restored, afterRestore, 100);
            restored.close();

            List<String> union = new ArrayList<>(beforeCheckpoint.keys());
            union.addAll(afterRestore.keys());
            assertEquals(
                    allKeys,
                    union,
                    "checkpoint after " + rowsBeforeCheckpoint + " rows, buffer " + bufferSize);
            for (RowData row : afterRestore.rows) {
                int lineNumber = (int) row.getLong(1);
                if (lineNumber != MALFORMED_LINE_NUMBER) {
                    assertEquals(MIXED_LINES.get(lineNumber - 1), row.getString(3).toString());
                }
            }
        }
    }

    @Test
    void snapshotRecordsOffsetAfterLastLine() throws Exception {
        String path = writeMixedFile("mixed.txt");
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext());
        reader.addSplits(List.of(LinesSplit.atStart(path, 0)));
        poll(reader, new CollectingReaderOutput(), 2);

        List<LinesSplit> state = reader.snapshotState(7L);

        assertEquals(List.of(new LinesSplit(path, 0, "first\r\nsecond\n".length(), 2)), state);
        reader.close();
    }

    @Test
    void snapshotKeepsSplitsNotYetOpened() throws Exception {
        String first = writeMixedFile("a.txt");
        String second = writeMixedFile("b.txt");
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext());
        reader.addSplits(List.of(LinesSplit.atStart(first, 0), LinesSplit.atStart(second, 0)));
        poll(reader, new CollectingReaderOutput(), 1);

        List<LinesSplit> state = reader.snapshotState(1L);

        assertEquals(2, state.size());
        assertEquals(1, state.get(0).lineNumber());
        assertEquals(LinesSplit.atStart(second, 0), state.get(1));
        reader.close();
    }

    @Test
    void readerRequestsSplitOnceWhileWaiting() throws Exception {
        TestingReaderContext context = new TestingReaderContext();
        LinesSourceReader reader = new LinesSourceReader(context);
        CollectingReaderOutput output = new CollectingReaderOutput();
        reader.start();

        assertEquals(InputStatus.NOTHING_AVAILABLE, reader.pollNext(output));
        assertEquals(InputStatus.NOTHING_AVAILABLE, reader.pollNext(output));

        assertEquals(1, context.splitRequests());
        assertFalse(reader.isAvailable().isDone());
        reader.notifyNoMoreSplits();
        assertTrue(reader.isAvailable().isDone());
        assertEquals(InputStatus.END_OF_INPUT, reader.pollNext(output));
        reader.close();
    }

    @Test
    void laterPassKeysHavePassSuffix() throws Exception {
        String path = writeMixedFile("mixed.txt");
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext());
        CollectingReaderOutput output = new CollectingReaderOutput();
        reader.addSplits(List.of(LinesSplit.atStart(path, 3)));
        reader.notifyNoMoreSplits();

        poll(reader, output, 2);

        assertEquals(List.of("mixed.txt:1#3", "mixed.txt:2#3"), output.keys());
        assertEquals(1, output.rows.get(0).getLong(1));
        reader.close();
    }

    @Test
    void loopModeRepeatsFilesWithPassKeys() throws Exception {
        java.nio.file.Path a = Files.writeString(tempDir.resolve("a.txt"), "a1\na2\n");
        java.nio.file.Path b = Files.writeString(tempDir.resolve("b.txt"), "b1\r\n");
        List<String> files =
                List.of(new Path(a.toUri()).toString(), new Path(b.toUri()).toString());
        SourceHarness harness = new SourceHarness(files, true, 1, 4);

        harness.run(9);

        assertEquals(
                List.of(
                        "a.txt:1", "a.txt:2", "b.txt:1",
                        "a.txt:1#1", "a.txt:2#1", "b.txt:1#1",
                        "a.txt:1#2", "a.txt:2#2", "b.txt:1#2"),
                harness.output.keys());
        harness.close();
    }

    @Test
    void parallelReadersShareFilesOnce() throws Exception {
        List<String> files = new ArrayList<>();
        Set<String> expected = new HashSet<>();
        for (int file = 0; file < 5; file++) {
            String name = "f" + file + ".txt";
            StringBuilder text = new StringBuilder();
            for (int line = 1; line <= file * 3; line++) {
                text.append("line ").append(line).append('\n');
                expected.add(name + ":" + line);
            }
            java.nio.file.Path written = Files.writeString(tempDir.resolve(name), text);
            files.add(new Path(written.toUri()).toString());
        }
        SourceHarness harness = new SourceHarness(files, false, 3, 7);

        harness.run(1000);

        List<String> keys = harness.output.keys();
        assertEquals(expected.size(), keys.size());
        assertEquals(expected, new HashSet<>(keys));
        harness.close();
    }

    @Test
    void malformedLineHasNullLine() throws Exception {
        java.nio.file.Path file = tempDir.resolve("latin1.txt");
        Files.write(file, new byte[] {'c', 'a', 'f', (byte) 0xE9, '\n', 'o', 'k', '\n'});
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext());
        CollectingReaderOutput output = new CollectingReaderOutput();
        reader.addSplits(List.of(LinesSplit.atStart(new Path(file.toUri()).toString(), 0)));
        reader.notifyNoMoreSplits();

        poll(reader, output, 10);

        assertEquals(2, output.rows.size());
        assertTrue(output.rows.get(0).isNullAt(3));
        assertEquals("latin1.txt:1", output.rows.get(0).getString(2).toString());
        assertEquals("ok", output.rows.get(1).getString(3).toString());
        reader.close();
    }

    @Test
    void pendingBytesFallToZeroAtEnd() throws Exception {
        java.nio.file.Path first = tempDir.resolve("first.txt");
        java.nio.file.Path second = tempDir.resolve("second.txt");
        Files.writeString(first, "aa\r\nbbbb\n", StandardCharsets.UTF_8);
        Files.writeString(second, "c\ndd", StandardCharsets.UTF_8);
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext(), 3);
        CollectingReaderOutput output = new CollectingReaderOutput();
        assertEquals(0, reader.pendingBytes());

        reader.addSplits(
                List.of(
                        LinesSplit.atStart(new Path(first.toUri()).toString(), 0),
                        LinesSplit.atStart(new Path(second.toUri()).toString(), 0)));
        assertEquals(9 + 4, reader.pendingBytes());

        poll(reader, output, 1);
        assertEquals(5 + 4, reader.pendingBytes());
        poll(reader, output, 1);
        assertEquals(4, reader.pendingBytes());
        poll(reader, output, 1);
        assertEquals(2, reader.pendingBytes());
        poll(reader, output, 1);
        assertEquals(0, reader.pendingBytes());

        reader.notifyNoMoreSplits();
        assertEquals(InputStatus.END_OF_INPUT, reader.pollNext(output));
        assertEquals(4, output.rows.size());
        assertEquals(0, reader.pendingBytes());
        reader.close();
    }

    @Test
    void pendingBytesOfRestoredSplitStartAtOffset() throws Exception {
        java.nio.file.Path file = tempDir.resolve("restored.txt");
        Files.writeString(file, "one\ntwo\nthree\n", StandardCharsets.UTF_8);
        LinesSourceReader reader = new LinesSourceReader(new TestingReaderContext());

        reader.addSplits(List.of(new LinesSplit(new Path(file.toUri()).toString(), 0, 4, 1)));

        assertEquals(10, reader.pendingBytes());
        reader.close();
    }
}
