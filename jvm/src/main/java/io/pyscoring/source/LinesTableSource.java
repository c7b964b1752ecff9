package io.pyscoring.source;

import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.SourceProvider;

/** Table source of the {@code pyscoring-lines} connector, which scans with {@link LinesSource}. */
public final class LinesTableSource implements ScanTableSource {

    private final LinesSource source;

    public LinesTableSource(LinesSource source) {
        this.source = source;
    }

    /** Returns the source that the scan runs. */
    public LinesSource source() {
        return source;
    }

    @Override
    public ChangelogMode getChangelogMode() {
        return ChangelogMode.insertOnly();
    }

    @Override
    public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
        return SourceProvider.of(source);
    }

    @Override
    public DynamicTableSource copy() {
        return new LinesTableSource(source);
    }

    @Override
    public String asSummaryString() {
        return LinesTableSourceFactory.IDENTIFIER;
    }
}
