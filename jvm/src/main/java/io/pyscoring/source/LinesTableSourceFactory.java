package io.pyscoring.source;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.ObjectIdentifier;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * Factory of the {@code pyscoring-lines} connector, found by Flink through {@code
 * META-INF/services/org.apache.flink.table.factories.Factory}.
 *
 * <pre>{@code
 * CREATE TABLE lines (
 *   source STRING, line_number BIGINT, key STRING, line STRING, line_bytes BYTES
 * ) WITH (
 *   'connector' = 'pyscoring-lines',
 *   'path' = '/data/adult/adult.test',
 *   'rows-per-second' = '100',
 *   'loop' = 'true'
 * )
 * }</pre>
 *
 * <p>The table must declare exactly these physical columns in this order, where {@code line_bytes}
 * is optional. Computed columns and a watermark may follow. The planner calls this factory on the client when it plans a statement.
 */
public final class LinesTableSourceFactory implements DynamicTableSourceFactory {

    public static final String IDENTIFIER = "pyscoring-lines";

    /** The physical columns that every row of the connector has. */
    static final DataType PRODUCED_TYPE =
            DataTypes.ROW(
                    DataTypes.FIELD("source", DataTypes.STRING()),
                    DataTypes.FIELD("line_number", DataTypes.BIGINT()),
                    DataTypes.FIELD("key", DataTypes.STRING()),
                    DataTypes.FIELD("line", DataTypes.STRING()));

    /**
     * The optional fifth physical column: the bytes of a line that is not valid UTF-8, and NULL
     * for every line that {@code line} holds.
     */
    static final DataTypes.Field LINE_BYTES_FIELD = DataTypes.FIELD("line_bytes", DataTypes.BYTES());

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(LinesSourceOptions.PATH);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(LinesSourceOptions.ROWS_PER_SECOND, LinesSourceOptions.LOOP);
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        DataType physicalRowType = context.getPhysicalRowDataType();
        validateSchema(context.getObjectIdentifier(), physicalRowType);
        return new LinesTableSource(
                createSource(helper.getOptions(), declaresLineBytes(physicalRowType)));
    }

    /**
     * Creates the source from validated options.
     *
     * @throws ValidationException if {@code path} is blank, or {@code rows-per-second} is negative,
     *     NaN or infinite
     */
    static LinesSource createSource(ReadableConfig options) {
        return createSource(options, false);
    }

    /**
     * Creates the source from validated options; with {@code emitLineBytes} its rows have the
     * fifth column {@code line_bytes}.
     */
    static LinesSource createSource(ReadableConfig options, boolean emitLineBytes) {
        String path = options.get(LinesSourceOptions.PATH);
        double rowsPerSecond = options.get(LinesSourceOptions.ROWS_PER_SECOND);
        boolean loop = options.get(LinesSourceOptions.LOOP);

        if (path == null || path.isBlank()) {
            throw new ValidationException(
                    "Option '"
                            + LinesSourceOptions.PATH.key()
                            + "' of connector '"
                            + IDENTIFIER
                            + "' is empty. Set it to a file or folder to read.");
        }

        if (!(rowsPerSecond >= 0) || Double.isInfinite(rowsPerSecond)) {
            throw new ValidationException(
                    "Option '"
                            + LinesSourceOptions.ROWS_PER_SECOND.key()
                            + "' of connector '"
                            + IDENTIFIER
                            + "' must be a finite number >= 0, got "
                            + rowsPerSecond
                            + ". Use 0 for no limit.");
        }
        return new LinesSource(path, rowsPerSecond, loop, emitLineBytes);
    }

    /**
     * Checks the declared physical columns against {@link #PRODUCED_TYPE}.
     *
     * <p>Names, order and types must match, and {@code line_bytes BYTES} may follow the four
     * columns of {@link #PRODUCED_TYPE}. {@code line} and {@code line_bytes} must be nullable,
     * because the source emits NULL in one of them for every line. The other columns may be
     * declared NOT NULL.
     *
     * @throws ValidationException naming the table, the declared and the required columns
     */
    static void validateSchema(ObjectIdentifier table, DataType physicalRowType) {
        List<RowType.RowField> declared = ((RowType) physicalRowType.getLogicalType()).getFields();
        List<RowType.RowField> expected =
                new ArrayList<>(((RowType) PRODUCED_TYPE.getLogicalType()).getFields());
        if (declared.size() == expected.size() + 1) {
            expected.add(
                    new RowType.RowField(
                            LINE_BYTES_FIELD.getName(),
                            LINE_BYTES_FIELD.getDataType().getLogicalType()));
        }

        boolean matches = declared.size() == expected.size();
        for (int i = 0; matches && i < expected.size(); i++) {
            RowType.RowField declaredField = declared.get(i);
            RowType.RowField expectedField = expected.get(i);
            LogicalType declaredType = declaredField.getType();
            matches =
                    declaredField.getName().equals(expectedField.getName())
                            && declaredType.copy(true).equals(expectedField.getType());
        }
        if (!matches) {
            throw new ValidationException(
                    "Table "
                            + table.asSummaryString()
                            + " declares the physical columns ("
                            + describe(declared)
                            + "), but connector '"
                            + IDENTIFIER
                            + "' produces ("
                            + describe(expected)
                            + "). Declare exactly these columns in this order, optionally"
                            + " followed by 'line_bytes BYTES'. Computed columns may follow.");
        }

        LogicalType lineType = declared.get(3).getType();
        if (!lineType.isNullable()) {
            throw new ValidationException(
                    "Table "
                            + table.asSummaryString()
                            + " declares column 'line' as "
                            + lineType.asSummaryString()
                            + ", but connector '"
                            + IDENTIFIER
                            + "' emits NULL for a line that is not valid UTF-8. Declare it as"
                            + " STRING without NOT NULL.");
        }
        if (declared.size() > 4 && !declared.get(4).getType().isNullable()) {
            throw new ValidationException(
                    "Table "
                            + table.asSummaryString()
                            + " declares column 'line_bytes' as NOT NULL, but connector '"
                            + IDENTIFIER
                            + "' emits NULL in it for every line that is valid UTF-8. Declare it"
                            + " as BYTES without NOT NULL.");
        }
    }

    /** Returns whether a validated physical row type declares the column {@code line_bytes}. */
    static boolean declaresLineBytes(DataType physicalRowType) {
        return ((RowType) physicalRowType.getLogicalType()).getFieldCount() > 4;
    }

    private static String describe(List<RowType.RowField> fields) {
        return fields.stream()
                .map(field -> field.getName() + " " + field.getType().asSummaryString())
                .collect(Collectors.joining(", "));
    }
}
