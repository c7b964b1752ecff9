package io.pyscoring.source;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.SourceOutput;
import org.apache.flink.table.data.RowData;

import java.util.ArrayList;
import java.util.List;

/** Reader output for tests that keeps every row. */
final class CollectingReaderOutput implements ReaderOutput<RowData> {

    final List<RowData> rows = new ArrayList<>();

    @Override
    public void collect(RowData record) {
        rows.add(record);
    }

    @Override
    public void collect(RowData record, long timestamp) {
        rows.add(record);
    }

    @Override
    public void emitWatermark(Watermark watermark) {}

    @Override
    public void markIdle() {}

    @Override
    public void markActive() {}

    @Override
    public SourceOutput<RowData> createOutputForSplit(String splitId) {
        return this;
    }

    @Override
    public void releaseOutputForSplit(String splitId) {}

    /** Returns the {@code key} column of every row, in order. */
    List<String> keys() {
        List<String> keys = new ArrayList<>();
        for (RowData row : rows) {
            keys.add(row.getString(2).toString());
        }
        return keys;
    }
}
