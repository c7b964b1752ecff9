package io.pyscoring.scoring;

import io.pyscoring.metrics.ScoringMetrics;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.catalog.DataTypeFactory;
import org.apache.flink.table.functions.AsyncTableFunction;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.FunctionDefinition;
import org.apache.flink.table.functions.SpecializedFunction;
import org.apache.flink.table.functions.UserDefinedFunction;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.inference.ArgumentCount;
import org.apache.flink.table.types.inference.CallContext;
import org.apache.flink.table.types.inference.ConstantArgumentCount;
import org.apache.flink.table.types.inference.InputTypeStrategy;
import org.apache.flink.table.types.inference.Signature;
import org.apache.flink.table.types.inference.TypeInference;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.utils.LogicalTypeCasts;
import org.apache.flink.types.Row;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code pyscoring_predict(export_dir, input_1, ..., input_n)}: scores rows with a SavedModel
 * through TensorFlow Java, in micro-batches.
 *
 * <p>{@code export_dir} is a string literal: an export directory or one version folder. The other
 * arguments follow the manifest's signature inputs in order; an argument whose SQL type is not the
 * input's type, and cannot be cast to it implicitly, fails at planning time with the input's name.
 * The function emits one row per input row: the signature outputs, {@code model_version BIGINT}
 * (the version that produced the row), {@code error_code STRING} and {@code error STRING}; a row
 * that could not be scored has NULL outputs and an error.
 *
 * <p>Versions: planning resolves an export directory to its newest complete version, whose
 * signature fixes the output columns. With an export directory and {@code
 * scoring.watch-interval-ms} above 0, a {@link ModelWatcher} then loads newer versions with the
 * same signature in the background, and each subtask swaps to the newest one on its batcher
 * thread between two batches, so every row is scored exactly once, by one version. A version
 * folder as {@code export_dir} pins that version.
 *
 * <p>Errors never fail the job: a NULL input gives NULL_INPUT, a row TensorFlow rejects gives
 * TF_ERROR (see {@link BatchScorer}), a row without a result after the row timeout gives TIMEOUT
 * and a batch whose scoring threw gives SCORER_ERROR (see {@link MicroBatcher}). The row timeout
 * is {@code scoring.async-timeout-ms}, or when that is 0, {@code scoring.max-batch-delay-ms}
 * plus {@value ScoringOptions#BATCHES_PER_ROW_TIMEOUT} times {@code scoring.batch-timeout-ms}.
 * Flink fails the job when a row exceeds {@code table.exec.async-table.timeout}, so that must be
 * longer; deploy sets it to twice the row timeout plus one second. Deploy also sets {@code
 * table.exec.async-table.retry-strategy} to NO_RETRY, because Flink 2.3 retries a failed future
 * by default and the function fails one only for {@code scoring.test.fail-at-rows} or an {@link
 * Error}.
 *
 * <p>Register it as an async table function and raise {@code
 * table.exec.async-table.max-concurrent-operations} (default 10) to at least twice {@code
 * scoring.max-batch-size}: that limit caps the rows in flight, so it also caps the batch size.
 *
 * <p>Threads: Flink calls {@link #open}, {@link #eval} and {@link #close} on the task thread;
 * TensorFlow runs on the subtask's batcher thread, which completes the futures and swaps
 * versions. A model version is loaded once per JVM and shared by the JVM's subtasks.
 */
public class PredictFunction extends AsyncTableFunction<Row> implements SpecializedFunction {

    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(PredictFunction.class);

    /** Failures injected by {@code scoring.test.fail-at-rows} in this JVM, for tests. */
    private static final AtomicInteger INJECTED_FAILURES = new AtomicInteger();

    /** The {@code export_dir} literal, absolute; null on the unspecialized instance. */
    private final String exportDir;

    /** The version folder chosen at planning time; null on the unspecialized instance. */
    private final String versionDir;

    private transient ScoringOptions options;
    private transient ModelWatcher watcher;
    private transient volatile LoadedModel model;
    private transient volatile BatchScorer scorer;
    private transient BatchScorer.FlinkCounters counters;
    private transient MicroBatcher batcher;
    private transient String subtaskName;
    private transient long failAtRow;
    private transient long rowsSeen;

    public PredictFunction() {
        this(null, null);
    }

    private PredictFunction(String exportDir, String versionDir) {
        this.exportDir = exportDir;
        this.versionDir = versionDir;
    }

    /** Returns an instance bound to the export directory and the version it resolves to now. */
    @Override
    public UserDefinedFunction specialize(SpecializedContext context) {
        Path exportPath = Path.of(exportDirArgument(context.getCallContext())).toAbsolutePath();
        Path resolved = ModelSpec.resolveVersionDir(exportPath);
        return new PredictFunction(exportPath.toString(), resolved.toAbsolutePath().toString());
    }

    @Override
    public void open(FunctionContext context) throws Exception {
        if (versionDir == null) {
            throw new IllegalStateException(
                    "pyscoring_predict was not specialized by the planner; register "
                            + PredictFunction.class.getName()
                            + " as a SQL function and call it with a literal export_dir");
        }
        options = ScoringOptions.fromLookup(key -> context.getJobParameter(key, null));
        ModelSpec planned = ModelSpec.read(Path.of(versionDir));
        ScoringMetrics metrics = ScoringMetrics.get();
        metrics.startServer(options);

        subtaskName = context.getTaskInfo().getTaskNameWithSubtasks();
        boolean pinned = exportDir.equals(versionDir);
        if (!pinned && options.watchIntervalMs > 0) {
            watcher = ModelWatcher.acquire(Path.of(exportDir), planned, options);
            model = watcher.current();
            if (!LoadedModel.retain(model)) {
                model = LoadedModel.acquire(model.spec, options);
            }
        } else {
            model = LoadedModel.acquire(planned, options);
        }
        MetricGroup group =
                context.getMetricGroup()
                        .addGroup("pyscoring")
                        .addGroup("model", planned.modelName());
        group.gauge("modelVersion", () -> model.spec.version());
        counters = BatchScorer.FlinkCounters.register(group);
        scorer = BatchScorer.open(model, counters);
        failAtRow = injectedFailureRow(context);
        rowsSeen = 0;

        String threadName = "pyscoring-batcher-" + subtaskName.replaceAll("[^A-Za-z0-9()/_-]", "_");
        batcher =
                new MicroBatcher(
                        threadName,
                        planned.inputs(),
                        options.maxBatchSize,
                        options.maxBatchDelayMs * 1_000_000L,
                        options.rowTimeoutMs * 1_000_000L,
                        System::nanoTime,
                        this::scoreBatch,
                        (future, code, message, waitedNanos) ->
                                scorer.completeWithError(future, code, message, waitedNanos));
        LOG.info(
                "Scoring with model {} version {} in {}: max batch {} rows, max delay {} ms, row"
                        + " timeout {} ms, {}, metrics port {}",
                model.spec.modelName(),
                model.spec.version(),
                subtaskName,
                options.maxBatchSize,
                options.maxBatchDelayMs,
                options.rowTimeoutMs,
                watcher == null
                        ? "version pinned"
                        : "watching " + exportDir + " every " + options.watchIntervalMs + " ms",
                metrics.port());
    }

    /**
     * Returns the row count at which this attempt of subtask 0 fails, from the test-only option
     * {@code scoring.test.fail-at-rows}, or 0 for none.
     */
    private long injectedFailureRow(FunctionContext context) {
        List<Long> failAt = options.testFailAtRows;
        int attempt = context.getTaskInfo().getAttemptNumber();
        if (failAt.isEmpty()
                || context.getTaskInfo().getIndexOfThisSubtask() != 0
                || attempt >= failAt.size()) {
            return 0;
        }
        LOG.warn("{}: {} makes attempt {} fail at row {}",
                subtaskName, ScoringOptions.TEST_FAIL_AT_ROWS.name(), attempt, failAt.get(attempt));
        return failAt.get(attempt);
    }

    /** Returns how many failures {@code scoring.test.fail-at-rows} injected in this JVM. */
    public static int injectedFailureCount() {
        return INJECTED_FAILURES.get();
    }

    /** Scores one batch on the batcher thread, first swapping to a newer version if one is ready. */
    private void scoreBatch(InputBatch batch) {
        if (watcher != null) {
            swapToLatest();
        }
        scorer.score(batch);
    }

    private void swapToLatest() {
        LoadedModel latest = watcher.current();
        LoadedModel previous = model;
        if (latest == previous || !LoadedModel.retain(latest)) {
            return;
        }
        scorer = BatchScorer.open(latest, counters);
        model = latest;
        LoadedModel.release(previous);
        LOG.info(
                "{} swapped model {} from version {} to version {}",
                subtaskName,
                latest.spec.modelName(),
                previous.spec.version(),
                latest.spec.version());
    }

    /**
     * Queues one row. {@code args[0]} is the export directory literal; {@code args[1..]} are the
     * signature inputs. A NULL input completes the row at once with error code NULL_INPUT.
     */
    public void eval(CompletableFuture<Collection<Row>> future, Object... args) {
        long entered = System.nanoTime();
        if (failAtRow > 0 && ++rowsSeen == failAtRow) {
            INJECTED_FAILURES.incrementAndGet();
            future.completeExceptionally(
                    new IllegalStateException(
                            "Failure injected by "
                                    + ScoringOptions.TEST_FAIL_AT_ROWS.name()
                                    + " at row "
                                    + rowsSeen
                                    + " of "
                                    + subtaskName));
            return;
        }
        List<TensorSpec> inputs = model.spec.inputs();
        for (int i = 0; i < inputs.size(); i++) {
            if (args[i + 1] == null) {
                scorer.completeWithError(
                        future, "NULL_INPUT", "input '" + inputs.get(i).name() + "' is NULL");
                return;
            }
        }
        try {
            batcher.add(args, 1, future, entered);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            future.completeExceptionally(e);
        }
    }

    @Override
    public void close() throws Exception {
        if (batcher != null) {
            batcher.close();
            batcher = null;
        }
        if (model != null) {
            LoadedModel.release(model);
            model = null;
        }
        if (watcher != null) {
            ModelWatcher.release(watcher);
            watcher = null;
        }
    }

    // ---------------------------------------------------------------- type inference

    @Override
    public TypeInference getTypeInference(DataTypeFactory typeFactory) {
        return TypeInference.newBuilder()
                .inputTypeStrategy(new SignatureInputStrategy())
                .outputTypeStrategy(
                        callContext ->
                                Optional.of(outputType(specOf(callContext))))
                .build();
    }

    /** The row type the function emits for a model. */
    static DataType outputType(ModelSpec spec) {
        List<DataTypes.Field> fields = new ArrayList<>();
        for (TensorSpec output : spec.outputs()) {
            fields.add(DataTypes.FIELD(output.name(), output.sqlType()));
        }
        fields.add(DataTypes.FIELD("model_version", DataTypes.BIGINT()));
        fields.add(DataTypes.FIELD("error_code", DataTypes.STRING()));
        fields.add(DataTypes.FIELD("error", DataTypes.STRING()));
        return DataTypes.ROW(fields);
    }

    private static String exportDirArgument(CallContext callContext) {
        if (!callContext.isArgumentLiteral(0) || callContext.isArgumentNull(0)) {
            throw callContext.newValidationError(
                    "The first argument of %s must be a string literal naming the model's export"
                            + " directory",
                    callContext.getName());
        }
        return callContext
                .getArgumentValue(0, String.class)
                .orElseThrow(
                        () ->
                                callContext.newValidationError(
                                        "The first argument of %s must be a string literal",
                                        callContext.getName()));
    }

    private static ModelSpec specOf(CallContext callContext) {
        String exportDir = exportDirArgument(callContext);
        try {
            return ModelSpec.read(Path.of(exportDir));
        } catch (IllegalArgumentException e) {
            throw callContext.newValidationError("%s", e.getMessage());
        }
    }

    /** Checks the arguments against the signature inputs, by position, naming each input. */
    private static final class SignatureInputStrategy implements InputTypeStrategy {

        @Override
        public ArgumentCount getArgumentCount() {
            return ConstantArgumentCount.from(1);
        }

        @Override
        public Optional<List<DataType>> inferInputTypes(
                CallContext callContext, boolean throwOnFailure) {
            ModelSpec spec = specOf(callContext);
            List<DataType> actual = callContext.getArgumentDataTypes();
            List<TensorSpec> inputs = spec.inputs();
            if (actual.size() != inputs.size() + 1) {
                throw callContext.newValidationError(
                        "%s takes the export directory and then %d inputs in signature order (%s),"
                                + " got %d inputs",
                        callContext.getName(),
                        inputs.size(),
                        String.join(", ", inputs.stream().map(TensorSpec::name).toList()),
                        actual.size() - 1);
            }
            List<DataType> result = new ArrayList<>();
            result.add(DataTypes.STRING());
            for (int i = 0; i < inputs.size(); i++) {
                TensorSpec input = inputs.get(i);
                if (input.width() != 0) {
                    throw callContext.newValidationError(
                            "Input '%s' has shape [-1, %d]; pyscoring_predict takes inputs of"
                                    + " shape [-1] only",
                            input.name(),
                            input.width());
                }
                LogicalType given = actual.get(i + 1).getLogicalType();
                DataType expected = input.sqlType();
                boolean sameRoot =
                        given.getTypeRoot() == expected.getLogicalType().getTypeRoot()
                                || (given.getTypeRoot() == LogicalTypeRoot.CHAR
                                        && input.type() == TensorType.STRING);
                if (!sameRoot
                        && !LogicalTypeCasts.supportsImplicitCast(
                                given, expected.getLogicalType())) {
                    throw callContext.newValidationError(
                            "Input '%s' (argument %d) must be %s to match the signature dtype %s,"
                                    + " got %s; cast the column in SQL or map another column to it",
                            input.name(),
                            i + 2,
                            expected,
                            input.type().manifestName,
                            given);
                }
                result.add(expected.nullable());
            }
            return Optional.of(result);
        }

        @Override
        public List<Signature> getExpectedSignatures(FunctionDefinition definition) {
            return List.of(
                    Signature.of(
                            Signature.Argument.of("export_dir", "STRING"),
                            Signature.Argument.of("input", "...")));
        }
    }
}
