package io.pyscoring.serving;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ScheduledFuture;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.java.typeutils.ObjectArrayTypeInfo;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedMultiInput;
import org.apache.flink.streaming.api.operators.TwoInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.table.types.DataTypeQueryable;
import org.apache.flink.table.types.utils.LegacyTypeInfoDataTypeConverter;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Groups rows into micro-batches for Python scoring operators and tags each batch with the
 * address of the application manager (AM).
 *
 * <p>Input 1 carries the rows. Input 2 carries the AM's broadcast messages, JSON strings such as
 * {@code {"kind": "am", "address": "127.0.0.1:40123", "version": 0}}. Messages of any other kind
 * (for example {@code "final"}) are ignored, and invalid ones are logged and ignored. The latest
 * AM message wins.
 *
 * <p>Each output row has the fields {@value #AM_ADDRESS_FIELD} (STRING), {@value
 * #AM_VERSION_FIELD} (INT) and {@value #ROWS_FIELD}, an array of at most {@code maxBatchRows}
 * input rows in arrival order (see {@link #outputType}). A batch is emitted when it has {@code
 * maxBatchRows} rows, when {@code maxDelayMs} of processing time have passed since its first row,
 * before a checkpoint barrier is forwarded ({@link #prepareSnapshotPreBarrier}), when the row
 * input ends, and when the operator finishes. Output records carry no timestamp.
 *
 * <p>Until the first AM address arrives the operator buffers every row, and emits all of them
 * as soon as the address arrives. Rows held at a checkpoint are written to operator list state and
 * restored after a failure. A rescale splits them evenly over the new subtasks. The AM
 * address is not part of the state, because a restarted job gets a new AM that broadcasts its
 * own address. If the AM input ends before an address arrived, the operator fails on the next
 * held row, because such rows can never be emitted.
 */
public final class RowBatchOperator extends AbstractStreamOperator<Row>
        implements TwoInputStreamOperator<Row, String, Row>, BoundedMultiInput {

    private static final long serialVersionUID = 1L;

    /** Operator name and uid that {@link #apply} sets. */
    public static final String NAME = "batch-rows";

    public static final String AM_ADDRESS_FIELD = "am_address";
    public static final String AM_VERSION_FIELD = "am_version";
    public static final String ROWS_FIELD = "rows";

    /** Value of the "kind" member of the AM message that carries its address. */
    static final String AM_KIND = "am";

    static final String HELD_ROWS_STATE = "held-rows";

    private static final Logger LOG = LoggerFactory.getLogger(RowBatchOperator.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final RowTypeInfo rowType;
    private final int maxBatchRows;
    private final long maxDelayMs;

    /**
     * Rows not emitted yet, in arrival order. NOTE: while no AM address is known this list has no
     * size limit, so an AM that never publishes its address lets it grow with the input.
     */
    private transient List<Row> pending;

    /** Processing time in ms at which the batch in {@link #pending} is due. */
    private transient long batchDeadlineMs;

    private transient ScheduledFuture<?> batchTimer;
    private transient ListState<Row> heldRowsState;

    /** Copies incoming rows when object reuse is enabled; null otherwise. */
    private transient TypeSerializer<Row> rowCopier;

    private transient String amAddress;
    private transient int amVersion;
    private transient boolean amInputEnded;
    private transient long invalidAmMessages;

    /**
     * Creates an operator for rows of {@code rowType}.
     *
     * @param maxBatchRows maximum rows in one batch, at least 1
     * @param maxDelayMs maximum processing time in ms from a batch's first row to its emission,
     *     at least 0; with 0 a batch is emitted as soon as the task runs its timers
     */
    public RowBatchOperator(RowTypeInfo rowType, int maxBatchRows, long maxDelayMs) {
        if (rowType == null) {
            throw new IllegalArgumentException("rowType is missing");
        }
        if (maxBatchRows < 1) {
            throw new IllegalArgumentException(
                    "maxBatchRows must be at least 1, got " + maxBatchRows);
        }
        if (maxDelayMs < 0) {
            throw new IllegalArgumentException("maxDelayMs must be at least 0, got " + maxDelayMs);
        }
        this.rowType = rowType;
        this.maxBatchRows = maxBatchRows;
        this.maxDelayMs = maxDelayMs;
    }

    /**
     * Adds the operator behind {@code rows} and the broadcast {@code amMessages}, named and with
     * uid {@value #NAME}.
     *
     * @param rows rows with a {@link RowTypeInfo}, or with the type information of {@code
     *     StreamTableEnvironment.toDataStream} (see {@link #rowTypeOf})
     * @param amMessages the AM's JSON messages, with type {@code Types.STRING}
     * @param parallelism parallelism of the operator, at least 1
     * @return the stream of batches, with type {@link #outputType}
     */
    public static SingleOutputStreamOperator<Row> apply(
            DataStream<Row> rows,
            DataStream<String> amMessages,
            int maxBatchRows,
            long maxDelayMs,
            int parallelism) {
        if (!Types.STRING.equals(amMessages.getType())) {
            throw new IllegalArgumentException(
                    "the AM message stream must have type STRING, got "
                            + amMessages.getType()
                            + "; declare output_type=Types.STRING() on the Python operator");
        }
        if (parallelism < 1) {
            throw new IllegalArgumentException(
                    "parallelism must be at least 1, got " + parallelism);
        }
        RowTypeInfo rowType = rowTypeOf(rows.getType());
        RowBatchOperator operator = new RowBatchOperator(rowType, maxBatchRows, maxDelayMs);
        return rows.connect(amMessages.broadcast())
                .transform(NAME, outputType(rowType), operator)
                .name(NAME)
                .uid(NAME)
                .setParallelism(parallelism);
    }

    /**
     * Returns the {@link RowTypeInfo} of a row stream's type information.
     *
     * <p>{@code StreamTableEnvironment.toDataStream} returns a stream whose type information is
     * the table runtime's {@code ExternalTypeInfo}, which describes its type as a {@code DataType}.
     * That type is converted to the legacy type information that the DataStream API and PyFlink
     * use.
     *
     * @throws IllegalArgumentException if the type is not a row type
     */
    public static RowTypeInfo rowTypeOf(TypeInformation<?> type) {
        if (type instanceof RowTypeInfo) {
            return (RowTypeInfo) type;
        }
        if (type instanceof DataTypeQueryable) {
            TypeInformation<?> legacy =
                    LegacyTypeInfoDataTypeConverter.toLegacyTypeInfo(
                            ((DataTypeQueryable) type).getDataType());
            if (legacy instanceof RowTypeInfo) {
                return (RowTypeInfo) legacy;
            }
            throw new IllegalArgumentException(
                    "rows must have a row type, got "
                            + type
                            + " (converted to "
                            + legacy
                            + "); convert a table with toDataStream or declare a row type");
        }
        throw new IllegalArgumentException(
                "rows must have a row type (RowTypeInfo or the type of toDataStream), got "
                        + type
                        + "; declare output_type=Types.ROW_NAMED(...) on the Python operator");
    }

    /** Returns the type of the batches: AM address, AM version and an array of input rows. */
    public static RowTypeInfo outputType(RowTypeInfo rowType) {
        return new RowTypeInfo(
                new TypeInformation<?>[] {
                    Types.STRING, Types.INT, ObjectArrayTypeInfo.getInfoFor(Row[].class, rowType)
                },
                new String[] {AM_ADDRESS_FIELD, AM_VERSION_FIELD, ROWS_FIELD});
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        pending = new ArrayList<>();
        heldRowsState =
                context.getOperatorStateStore()
                        .getListState(new ListStateDescriptor<>(HELD_ROWS_STATE, rowType));
        if (context.isRestored()) {
            for (Row row : heldRowsState.get()) {
                pending.add(row);
            }
            LOG.info(
                    "Restored {} held rows in subtask {}",
                    pending.size(),
                    getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
        }
    }

    @Override
    public void open() throws Exception {
        super.open();
        if (getExecutionConfig().isObjectReuseEnabled()) {
            rowCopier = rowType.createSerializer(getExecutionConfig().getSerializerConfig());
        }
        LOG.info(
                "Starting {} in subtask {}: at most {} rows a batch, emitted at most {} ms after"
                        + " its first row, rows {}",
                NAME,
                getRuntimeContext().getTaskInfo().getIndexOfThisSubtask(),
                maxBatchRows,
                maxDelayMs,
                rowType);
    }

    @Override
    public void processElement1(StreamRecord<Row> element) throws Exception {
        Row row = rowCopier == null ? element.getValue() : rowCopier.copy(element.getValue());
        pending.add(row);
        if (amAddress == null) {
            failIfAmInputEnded();
            return;
        }
        if (pending.size() >= maxBatchRows) {
            emitPending();
        } else if (pending.size() == 1) {
            startBatchTimer();
        }
    }

    @Override
    public void processElement2(StreamRecord<String> element) throws Exception {
        String message = element.getValue();
        JsonNode body = parseAmAddressMessage(message);
        if (body == null) {
            return;
        }

        boolean first = amAddress == null;
        amAddress = body.get("address").asText();
        amVersion = body.get("version").intValue();
        LOG.info(
                "Subtask {} uses the AM at {} (version {}); {} rows are waiting",
                getRuntimeContext().getTaskInfo().getIndexOfThisSubtask(),
                amAddress,
                amVersion,
                pending.size());
        if (first) {
            emitPending();
        }
    }

    /**
     * Parses an AM message and returns it if it is a valid message of kind {@value #AM_KIND},
     * with a non-empty string "address" and a 32-bit integer "version". Returns null for other
     * kinds, and logs and returns null for invalid messages.
     */
    private JsonNode parseAmAddressMessage(String message) {
        JsonNode body;
        try {
            body = JSON.readTree(message);
        } catch (JsonProcessingException e) {
            logInvalidAmMessage(message, "it is not valid JSON: " + e.getOriginalMessage());
            return null;
        }
        if (body == null || !body.isObject()) {
            logInvalidAmMessage(message, "it is not a JSON object");
            return null;
        }
        if (!AM_KIND.equals(body.path("kind").asText(null))) {
            return null;
        }

        JsonNode address = body.get("address");
        if (address == null || !address.isTextual() || address.asText().isEmpty()) {
            logInvalidAmMessage(message, "its \"address\" is missing or not a non-empty string");
            return null;
        }
        JsonNode version = body.get("version");
        if (version == null || !version.isIntegralNumber() || !version.canConvertToInt()) {
            logInvalidAmMessage(message, "its \"version\" is missing or not a 32-bit integer");
            return null;
        }
        return body;
    }

    @Override
    public void endInput(int inputId) throws Exception {
        if (inputId == 1) {
            emitPendingIfAmKnown();
        } else if (amAddress == null) {
            amInputEnded = true;
            LOG.warn(
                    "The AM input of subtask {} ended before an AM address arrived",
                    getRuntimeContext().getTaskInfo().getIndexOfThisSubtask());
            failIfAmInputEnded();
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        emitPendingIfAmKnown();
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        // Rows are still pending here only while no AM address is known, because
        // prepareSnapshotPreBarrier emitted them otherwise.
        heldRowsState.update(pending);
    }

    @Override
    public void finish() throws Exception {
        emitPendingIfAmKnown();
        if (!pending.isEmpty()) {
            throw new IllegalStateException(
                    pending.size()
                            + " rows cannot be emitted because no AM address arrived before the"
                            + " end of input; check that the AM publishes {\"kind\": \"am\", ...}"
                            + " on the AM stream");
        }
        super.finish();
    }

    @Override
    public void close() throws Exception {
        cancelBatchTimer();
        super.close();
    }

    private void startBatchTimer() {
        long now = getProcessingTimeService().getCurrentProcessingTime();
        // Saturates instead of overflowing for delays close to Long.MAX_VALUE.
        batchDeadlineMs = maxDelayMs > Long.MAX_VALUE - now ? Long.MAX_VALUE : now + maxDelayMs;
        batchTimer =
                getProcessingTimeService().registerTimer(batchDeadlineMs, this::onBatchDeadline);
    }

    private void cancelBatchTimer() {
        if (batchTimer != null) {
            batchTimer.cancel(false);
            batchTimer = null;
        }
    }

    /**
     * Emits the pending batch if its deadline has come. A timer of an earlier batch can still run
     * after its cancellation, and then it finds a later deadline and does nothing.
     */
    private void onBatchDeadline(long timestampMs) throws Exception {
        if (amAddress != null && !pending.isEmpty() && timestampMs >= batchDeadlineMs) {
            batchTimer = null;
            emitPending();
        }
    }

    private void emitPendingIfAmKnown() {
        if (amAddress != null) {
            emitPending();
        }
    }

    /** Emits every pending row, in batches of at most maxBatchRows rows. */
    private void emitPending() {
        cancelBatchTimer();
        for (int from = 0; from < pending.size(); from += maxBatchRows) {
            int to = Math.min(from + maxBatchRows, pending.size());
            Row[] rows = pending.subList(from, to).toArray(new Row[0]);
            output.collect(new StreamRecord<>(Row.of(amAddress, amVersion, rows)));
        }
        pending.clear();
    }

    private void failIfAmInputEnded() {
        if (amInputEnded && !pending.isEmpty()) {
            throw new IllegalStateException(
                    "subtask "
                            + getRuntimeContext().getTaskInfo().getIndexOfThisSubtask()
                            + " holds "
                            + pending.size()
                            + " rows, but the AM input ended before an AM address arrived, so"
                            + " they cannot be emitted");
        }
    }

    private void logInvalidAmMessage(String message, String reason) {
        invalidAmMessages++;
        LOG.error(
                "Ignored an invalid AM message in subtask {} because {} ({} invalid so far): {}",
                getRuntimeContext().getTaskInfo().getIndexOfThisSubtask(),
                reason,
                invalidAmMessages,
                abbreviate(message));
    }

    private static String abbreviate(String text) {
        int limit = 200;
        return text.length() <= limit ? text : text.substring(0, limit) + "...";
    }
}
