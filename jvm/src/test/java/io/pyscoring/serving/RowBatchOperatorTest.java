package io.pyscoring.serving;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.LongStream;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.ObjectArrayTypeInfo;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.streaming.util.AbstractStreamOperatorTestHarness;
import org.apache.flink.streaming.util.TwoInputStreamOperatorTestHarness;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.runtime.typeutils.ExternalTypeInfo;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class RowBatchOperatorTest {

    private static final RowTypeInfo ROW_TYPE =
            new RowTypeInfo(
                    new TypeInformation<?>[] {Types.LONG, Types.STRING},
                    new String[] {"id", "name"});
    private static final String AM_ADDRESS = "127.0.0.1:40123";
    private static final int MAX_PARALLELISM = 128;

    private static TwoInputStreamOperatorTestHarness<Row, String, Row> harness(
            int maxBatchRows, long maxDelayMs, int parallelism, int subtask) throws Exception {
        RowBatchOperator operator = new RowBatchOperator(ROW_TYPE, maxBatchRows, maxDelayMs);
        TwoInputStreamOperatorTestHarness<Row, String, Row> harness =
                new TwoInputStreamOperatorTestHarness<>(
                        operator, MAX_PARALLELISM, parallelism, subtask);
        harness.setup(
                RowBatchOperator.outputType(ROW_TYPE)
                        .createSerializer(harness.getExecutionConfig().getSerializerConfig()));
        harness.setProcessingTime(0);
        return harness;
    }

    /** Returns an opened harness of one subtask without restored state. */
    private static TwoInputStreamOperatorTestHarness<Row, String, Row> openHarness(
            int maxBatchRows, long maxDelayMs) throws Exception {
        TwoInputStreamOperatorTestHarness<Row, String, Row> harness =
                harness(maxBatchRows, maxDelayMs, 1, 0);
        harness.open();
        return harness;
    }

    private static String amMessage(String address, int version) {
        return "{\"kind\": \"am\", \"address\": \"" + address + "\", \"version\": " + version + "}";
    }

    private static void addRows(
            TwoInputStreamOperatorTestHarness<Row, String, Row> harness, long from, long to)
            throws Exception {
        for (long id = from; id < to; id++) {
            harness.processElement1(Row.of(id, "row-" + id), 0);
        }
    }

    private static List<Long> ids(Row batch) {
        Row[] rows = (Row[]) batch.getField(2);
        List<Long> ids = new ArrayList<>();
        for (Row row : rows) {
            ids.add((Long) row.getField(0));
        }
        return ids;
    }

    private static List<List<Long>> batchIds(
            TwoInputStreamOperatorTestHarness<Row, String, Row> harness) {
        return harness.extractOutputValues().stream()
                .map(RowBatchOperatorTest::ids)
                .collect(Collectors.toList());
    }

    private static List<Long> range(long from, long to) {
        return LongStream.range(from, to).boxed().collect(Collectors.toList());
    }

    @Test
    void sizeTriggerEmitsFullBatches() throws Exception {
        var harness = openHarness(3, 60_000);
        harness.processElement2(amMessage(AM_ADDRESS, 4), 0);
        addRows(harness, 0, 7);

        assertEquals(List.of(range(0, 3), range(3, 6)), batchIds(harness));
        Row first = harness.extractOutputValues().get(0);
        assertEquals(AM_ADDRESS, first.getField(0));
        assertEquals(4, first.getField(1));
        assertEquals("row-1", ((Row[]) first.getField(2))[1].getField(1));

        harness.endInput1();
        assertEquals(List.of(range(0, 3), range(3, 6), range(6, 7)), batchIds(harness));
        harness.close();
    }

    @Test
    void timerEmitsBatchAfterMaxDelay() throws Exception {
        var harness = openHarness(10, 100);
        harness.processElement2(amMessage(AM_ADDRESS, 0), 0);
        harness.setProcessingTime(10);
        addRows(harness, 0, 1);
        harness.setProcessingTime(50);
        addRows(harness, 1, 2);

        harness.setProcessingTime(109);
        assertEquals(List.of(), batchIds(harness));
        harness.setProcessingTime(110);
        assertEquals(List.of(range(0, 2)), batchIds(harness));

        harness.setProcessingTime(200);
        addRows(harness, 2, 3);
        harness.setProcessingTime(299);
        assertEquals(1, batchIds(harness).size());
        harness.setProcessingTime(300);
        assertEquals(List.of(range(0, 2), range(2, 3)), batchIds(harness));
        harness.close();
    }

    @Test
    void staleTimerKeepsNextBatchOpen() throws Exception {
        var harness = openHarness(2, 100);
        harness.processElement2(amMessage(AM_ADDRESS, 0), 0);
        addRows(harness, 0, 2);
        harness.setProcessingTime(50);
        addRows(harness, 2, 3);

        harness.setProcessingTime(100);
        assertEquals(List.of(range(0, 2)), batchIds(harness));
        harness.setProcessingTime(150);
        assertEquals(List.of(range(0, 2), range(2, 3)), batchIds(harness));
        harness.close();
    }

    @Test
    void maxLongDelayDoesNotOverflow() throws Exception {
        var harness = openHarness(10, Long.MAX_VALUE);
        harness.processElement2(amMessage(AM_ADDRESS, 0), 0);
        harness.setProcessingTime(1_000);
        addRows(harness, 0, 1);
        harness.setProcessingTime(2_000_000);
        assertEquals(List.of(), batchIds(harness));

        harness.endInput1();
        assertEquals(List.of(range(0, 1)), batchIds(harness));
        harness.close();
    }

    @Test
    void barrierFlushesPendingBatch() throws Exception {
        var harness = openHarness(10, 60_000);
        harness.processElement2(amMessage(AM_ADDRESS, 0), 0);
        addRows(harness, 0, 2);
        assertEquals(List.of(), batchIds(harness));

        harness.prepareSnapshotPreBarrier(1);
        assertEquals(List.of(range(0, 2)), batchIds(harness));
        OperatorSubtaskState state = harness.snapshot(1, 0);
        harness.close();

        var restored = harness(10, 60_000, 1, 0);
        restored.initializeState(state);
        restored.open();
        restored.processElement2(amMessage(AM_ADDRESS, 1), 0);
        restored.endInput1();
        assertEquals(List.of(), batchIds(restored));
        restored.close();
    }

    @Test
    void rowsHeldUntilAmAddressArrives() throws Exception {
        var harness = openHarness(2, 100);
        addRows(harness, 0, 5);
        harness.setProcessingTime(10_000);
        harness.prepareSnapshotPreBarrier(1);
        harness.endInput1();
        assertEquals(List.of(), batchIds(harness));

        harness.processElement2(amMessage(AM_ADDRESS, 2), 0);
        assertEquals(List.of(range(0, 2), range(2, 4), range(4, 5)), batchIds(harness));
        for (Row batch : harness.extractOutputValues()) {
            assertEquals(AM_ADDRESS, batch.getField(0));
            assertEquals(2, batch.getField(1));
        }
        harness.close();
    }

    @Test
    void nonAmMessagesAreIgnored() throws Exception {
        var harness = openHarness(2, 100);
        addRows(harness, 0, 1);
        String[] ignored = {
            "{\"kind\": \"final\", \"address\": \"127.0.0.1:1\", \"version\": 9, \"loss\": 0.5}",
            "not json",
            "[1, 2]",
            "{\"address\": \"127.0.0.1:2\", \"version\": 0}",
            "{\"kind\": \"am\", \"version\": 0}",
            "{\"kind\": \"am\", \"address\": \"\", \"version\": 0}",
            "{\"kind\": \"am\", \"address\": \"127.0.0.1:3\"}",
            "{\"kind\": \"am\", \"address\": \"127.0.0.1:4\", \"version\": \"1\"}",
            "{\"kind\": \"am\", \"address\": \"127.0.0.1:5\", \"version\": 1.5}",
            "{\"kind\": \"am\", \"address\": \"127.0.0.1:6\", \"version\": 9999999999}",
        };
        for (String message : ignored) {
            harness.processElement2(message, 0);
        }
        harness.setProcessingTime(1_000);
        assertEquals(List.of(), batchIds(harness));

        harness.processElement2(amMessage(AM_ADDRESS, 3), 0);
        harness.processElement2("{\"kind\": \"final\", \"address\": \"127.0.0.1:7\"}", 0);
        addRows(harness, 1, 3);
        List<Row> batches = harness.extractOutputValues();
        assertEquals(List.of(range(0, 1), range(1, 3)), batchIds(harness));
        assertEquals(AM_ADDRESS, batches.get(1).getField(0));
        assertEquals(3, batches.get(1).getField(1));
        harness.close();
    }

    @Test
    void latestAmMessageWins() throws Exception {
        var harness = openHarness(1, 100);
        harness.processElement2(amMessage(AM_ADDRESS, 0), 0);
        addRows(harness, 0, 1);
        harness.processElement2(amMessage("127.0.0.1:40999", 1), 0);
        addRows(harness, 1, 2);

        List<Row> batches = harness.extractOutputValues();
        assertEquals(2, batches.size());
        assertEquals(AM_ADDRESS, batches.get(0).getField(0));
        assertEquals(0, batches.get(0).getField(1));
        assertEquals("127.0.0.1:40999", batches.get(1).getField(0));
        assertEquals(1, batches.get(1).getField(1));
        harness.close();
    }

    @Test
    void snapshotRestoresHeldRows() throws Exception {
        var harness = openHarness(10, 100);
        addRows(harness, 0, 3);
        harness.prepareSnapshotPreBarrier(1);
        OperatorSubtaskState state = harness.snapshot(1, 0);
        assertEquals(List.of(), batchIds(harness));

        var restored = harness(10, 100, 1, 0);
        restored.initializeState(state);
        restored.open();
        assertEquals(List.of(), batchIds(restored));
        restored.processElement2(amMessage(AM_ADDRESS, 1), 0);
        assertEquals(List.of(range(0, 3)), batchIds(restored));
        assertEquals("row-2", ((Row[]) restored.extractOutputValues().get(0).getField(2))[2]
                .getField(1));
        restored.close();

        // The first harness can only finish once its held rows have an AM address.
        harness.processElement2(amMessage(AM_ADDRESS, 0), 0);
        harness.close();
    }

    @Test
    void rescaleSpreadsHeldRowsOverSubtasks() throws Exception {
        List<OperatorSubtaskState> states = new ArrayList<>();
        for (int subtask = 0; subtask < 2; subtask++) {
            var old = harness(4, 100, 2, subtask);
            old.open();
            addRows(old, subtask * 5L, subtask * 5L + 5);
            old.prepareSnapshotPreBarrier(1);
            states.add(old.snapshot(1, 0));
        }
        OperatorSubtaskState packed =
                AbstractStreamOperatorTestHarness.repackageState(
                        states.toArray(new OperatorSubtaskState[0]));

        List<Long> emitted = new ArrayList<>();
        for (int subtask = 0; subtask < 3; subtask++) {
            var rescaled = harness(4, 100, 3, subtask);
            rescaled.initializeState(
                    AbstractStreamOperatorTestHarness.repartitionOperatorState(
                            packed, MAX_PARALLELISM, 2, 3, subtask));
            rescaled.open();
            rescaled.processElement2(amMessage(AM_ADDRESS, 1), 0);
            for (List<Long> batch : batchIds(rescaled)) {
                assertTrue(batch.size() <= 4, "batch larger than maxBatchRows: " + batch);
                emitted.addAll(batch);
            }
            rescaled.close();
        }
        emitted.sort(null);
        assertEquals(range(0, 10), emitted);
    }

    @Test
    void finishFailsWithHeldRows() throws Exception {
        var harness = openHarness(10, 100);
        addRows(harness, 0, 1);
        IllegalStateException error = assertThrows(IllegalStateException.class, harness::close);
        assertTrue(error.getMessage().contains("no AM address"), error.getMessage());
    }

    @Test
    void amInputEndWithoutAddressFails() throws Exception {
        var harness = openHarness(10, 100);
        addRows(harness, 0, 1);
        assertThrows(IllegalStateException.class, harness::endInput2);
    }

    @Test
    void rowAfterAmInputEndWithoutAddressFails() throws Exception {
        var harness = openHarness(10, 100);
        harness.endInput2();
        assertThrows(IllegalStateException.class, () -> addRows(harness, 0, 1));
    }

    @Test
    void rowTypeOfConvertsTableType() {
        TypeInformation<Row> tableType =
                ExternalTypeInfo.of(
                        DataTypes.ROW(
                                DataTypes.FIELD("id", DataTypes.BIGINT()),
                                DataTypes.FIELD("name", DataTypes.STRING())));

        RowTypeInfo rowType = RowBatchOperator.rowTypeOf(tableType);
        assertArrayEquals(new String[] {"id", "name"}, rowType.getFieldNames());
        assertEquals(Types.LONG, rowType.getTypeAt(0));
        assertEquals(Types.STRING, rowType.getTypeAt(1));
        assertEquals(ROW_TYPE, RowBatchOperator.rowTypeOf(ROW_TYPE));
    }

    @Test
    void rowTypeOfRejectsNonRowTypes() {
        assertThrows(
                IllegalArgumentException.class, () -> RowBatchOperator.rowTypeOf(Types.STRING));
        TypeInformation<?> bigint = ExternalTypeInfo.of(DataTypes.BIGINT());
        assertThrows(IllegalArgumentException.class, () -> RowBatchOperator.rowTypeOf(bigint));
    }

    @Test
    void outputTypeHasAmFieldsAndRowArray() {
        RowTypeInfo output = RowBatchOperator.outputType(ROW_TYPE);
        assertArrayEquals(
                new String[] {"am_address", "am_version", "rows"}, output.getFieldNames());
        assertEquals(Types.STRING, output.getTypeAt(0));
        assertEquals(Types.INT, output.getTypeAt(1));
        assertEquals(ObjectArrayTypeInfo.getInfoFor(Row[].class, ROW_TYPE), output.getTypeAt(2));
    }

    @Test
    void constructorRejectsInvalidSettings() {
        assertThrows(IllegalArgumentException.class, () -> new RowBatchOperator(null, 1, 0));
        assertThrows(IllegalArgumentException.class, () -> new RowBatchOperator(ROW_TYPE, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new RowBatchOperator(ROW_TYPE, 1, -1));
    }
}
