package io.pyscoring.model;

import io.pyscoring.scoring.ModelSpec;
import io.pyscoring.scoring.ScoringOptions;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.api.config.ExecutionConfigOptions;
import org.apache.flink.table.catalog.ResolvedCatalogModel;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.factories.ModelProviderFactory;
import org.apache.flink.table.ml.ModelProvider;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Model provider {@code 'pyscoring'}: serves a pyscoring export to {@code ML_PREDICT} through
 * TensorFlow Java, with the micro-batcher and metrics of the Java scorer.
 *
 * <pre>{@code
 * CREATE MODEL census
 *   INPUT (age BIGINT, workclass STRING, ...)
 *   OUTPUT (probability FLOAT, logit FLOAT)
 *   WITH ('provider' = 'pyscoring', 'path' = '/models/census');
 * SELECT * FROM ML_PREDICT(TABLE people, MODEL census, DESCRIPTOR(age, workclass, ...));
 * }</pre>
 *
 * <p>The export's manifest is read when the query is planned: an export directory binds its
 * newest complete version then, and the declared columns are checked against that version's
 * signature (see {@link SchemaBinding}). Flink 2.3 checks the {@code DESCRIPTOR} against the
 * {@code INPUT} clause before any provider runs, so the clauses cannot be left out for the
 * provider to fill in; {@code pyscoring ddl EXPORT_DIR} prints them for an export.
 */
public class PyscoringModelProviderFactory implements ModelProviderFactory {

    private static final Logger LOG = LoggerFactory.getLogger(PyscoringModelProviderFactory.class);

    public static final String IDENTIFIER = "pyscoring";

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(ModelOptions.PATH);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(
                ModelOptions.MAX_BATCH_SIZE,
                ModelOptions.MAX_BATCH_DELAY_MS,
                ModelOptions.INTRA_OP_THREADS,
                ModelOptions.INTER_OP_THREADS,
                ModelOptions.MAX_MODEL_BYTES);
    }

    @Override
    public ModelProvider createModelProvider(Context context) {
        FactoryUtil.ModelProviderFactoryHelper helper =
                FactoryUtil.createModelProviderFactoryHelper(this, context);
        helper.validate();
        String model = context.getObjectIdentifier().asSummaryString();
        Map<String, String> overrides =
                ModelOptions.scoringOverrides(helper.getOptions(), model);

        String path = helper.getOptions().get(ModelOptions.PATH);
        ModelSpec spec;
        try {
            spec = ModelSpec.read(Path.of(path).toAbsolutePath());
        } catch (IllegalArgumentException e) {
            throw new ValidationException(
                    String.format(
                            "Invalid option 'path' = '%s' of model %s: %s", path, model, e.getMessage()),
                    e);
        }
        ResolvedCatalogModel catalogModel = context.getCatalogModel();
        SchemaBinding binding =
                SchemaBinding.bind(
                        model,
                        spec,
                        catalogModel.getResolvedInputSchema(),
                        catalogModel.getResolvedOutputSchema());

        int batchSize =
                Integer.parseInt(
                        overrides.getOrDefault(
                                ScoringOptions.MAX_BATCH_SIZE.name(),
                                ScoringOptions.MAX_BATCH_SIZE.defaultValue()));
        int inFlight =
                context.getConfiguration()
                        .get(ExecutionConfigOptions.TABLE_EXEC_ASYNC_ML_PREDICT_MAX_CONCURRENT_OPERATIONS);
        if (inFlight < 2 * batchSize) {
            LOG.warn(
                    "Model {}: {} = {} caps the rows in flight per subtask, so batches hold at"
                            + " most {} rows although max-batch-size is {}; raise it to at least {}"
                            + " (or set 'max-concurrent-operations' in the ML_PREDICT config map)",
                    model,
                    ExecutionConfigOptions.TABLE_EXEC_ASYNC_ML_PREDICT_MAX_CONCURRENT_OPERATIONS.key(),
                    inFlight,
                    inFlight,
                    batchSize,
                    2 * batchSize);
        }
        LOG.info(
                "Model {} binds {} version {} in {}",
                model,
                spec.modelName(),
                spec.version(),
                spec.versionDir());
        return new PyscoringModelProvider(
                model, spec.versionDir().toString(), binding, overrides);
    }
}
