package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

import java.util.List;

class LinesSplitEnumeratorTest {

    private static final List<String> FILES = List.of("file:/d/a.txt", "file:/d/b.txt");

    private static LinesSplitEnumerator create(TestingEnumeratorContext context, boolean loop) {
        return new LinesSplitEnumerator(
                context, FILES, loop, LinesSplitEnumerator.splitsOfPass(FILES, 0), 1);
    }

    @Test
    void boundedAssignsInFileOrderThenEnds() {
        TestingEnumeratorContext context = new TestingEnumeratorContext();
        context.registerReader(0);
        context.registerReader(1);
        LinesSplitEnumerator enumerator = create(context, false);

        enumerator.handleSplitRequest(1, "localhost");
        enumerator.handleSplitRequest(0, "localhost");
        enumerator.handleSplitRequest(1, "localhost");

        assertEquals(List.of(LinesSplit.atStart("file:/d/a.txt", 0)), context.assigned.get(1));
        assertEquals(List.of(LinesSplit.atStart("file:/d/b.txt", 0)), context.assigned.get(0));
        assertTrue(context.noMoreSplits.contains(1));
        assertFalse(context.noMoreSplits.contains(0));
    }

    @Test
    void loopStartsNextPass() {
        TestingEnumeratorContext context = new TestingEnumeratorContext();
        context.registerReader(0);
        LinesSplitEnumerator enumerator = create(context, true);

        for (int i = 0; i < 5; i++) {
            enumerator.handleSplitRequest(0, null);
        }

        assertEquals(
                List.of(
                        LinesSplit.atStart("file:/d/a.txt", 0),
                        LinesSplit.atStart("file:/d/b.txt", 0),
                        LinesSplit.atStart("file:/d/a.txt", 1),
                        LinesSplit.atStart("file:/d/b.txt", 1),
                        LinesSplit.atStart("file:/d/a.txt", 2)),
                context.assigned.get(0));
        assertTrue(context.noMoreSplits.isEmpty());
    }

    @Test
    void splitsAddedBackComeFirst() {
        TestingEnumeratorContext context = new TestingEnumeratorContext();
        context.registerReader(0);
        LinesSplitEnumerator enumerator = create(context, false);
        LinesSplit partlyRead = new LinesSplit("file:/d/a.txt", 0, 10, 2);
        LinesSplit unread = LinesSplit.atStart("file:/d/c.txt", 0);
        enumerator.handleSplitRequest(0, null);

        enumerator.addSplitsBack(List.of(partlyRead, unread), 0);
        enumerator.handleSplitRequest(0, null);
        enumerator.handleSplitRequest(0, null);

        assertEquals(
                List.of(LinesSplit.atStart("file:/d/a.txt", 0), partlyRead, unread),
                context.assigned.get(0));
    }

    @Test
    void unregisteredReaderIgnored() {
        TestingEnumeratorContext context = new TestingEnumeratorContext();
        LinesSplitEnumerator enumerator = create(context, false);

        enumerator.handleSplitRequest(3, null);

        assertTrue(context.assigned.isEmpty());
        assertTrue(context.noMoreSplits.isEmpty());
        assertEquals(2, enumerator.snapshotState(1).pendingSplits().size());
    }

    @Test
    void restoredEnumeratorContinuesFromSnapshot() throws Exception {
        TestingEnumeratorContext context = new TestingEnumeratorContext();
        context.registerReader(0);
        LinesSplitEnumerator enumerator = create(context, true);
        enumerator.handleSplitRequest(0, null);
        enumerator.handleSplitRequest(0, null);
        enumerator.handleSplitRequest(0, null);

        LinesEnumeratorStateSerializer serializer = LinesEnumeratorStateSerializer.INSTANCE;
        LinesEnumeratorState state =
                serializer.deserialize(1, serializer.serialize(enumerator.snapshotState(9)));
        TestingEnumeratorContext restoredContext = new TestingEnumeratorContext();
        restoredContext.registerReader(0);
        LinesSource source = new LinesSource("file:/d", 0, true);
        LinesSplitEnumerator restored =
                (LinesSplitEnumerator) source.restoreEnumerator(restoredContext, state);
        restored.handleSplitRequest(0, null);
        restored.handleSplitRequest(0, null);

        assertEquals(FILES, state.files());
        assertEquals(2, state.nextPass());
        assertEquals(
                List.of(
                        LinesSplit.atStart("file:/d/b.txt", 1),
                        LinesSplit.atStart("file:/d/a.txt", 2)),
                restoredContext.assigned.get(0));
    }
}
