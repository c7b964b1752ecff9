package io.pyscoring.parse;

import io.pyscoring.parse.DelimitedLineParser.Column;
import io.pyscoring.parse.DelimitedLineParser.ColumnType;
import io.pyscoring.scoring.ScoringOptions;

import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.catalog.DataTypeFactory;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.FunctionDefinition;
import org.apache.flink.table.functions.TableFunction;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.inference.ArgumentCount;
import org.apache.flink.table.types.inference.CallContext;
import org.apache.flink.table.types.inference.ConstantArgumentCount;
import org.apache.flink.table.types.inference.InputTypeStrategy;
import org.apache.flink.table.types.inference.Signature;
import org.apache.flink.table.types.inference.TypeInference;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeFamily;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.table.types.logical.utils.LogicalTypeParser;
import org.apache.flink.types.Row;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Table function {@code pyscoring_parse(line, schema, delimiter [, line_bytes])}: parses a
 * delimited line into typed columns plus {@code error_code STRING, error STRING}, one output row
 * per input line.
 *
 * <pre>{@code
 * tableEnv.createTemporarySystemFunction("pyscoring_parse", ParseFunction.class);
 *
 * SELECT l.key, p.*
 * FROM lines AS l,
 *   LATERAL TABLE(pyscoring_parse(l.line, 'age BIGINT, workclass STRING', ', ')) AS p
 * }</pre>
 *
 * <p>{@code schema} and {@code delimiter} must be string literals, because the output columns
 * are fixed when the statement is planned. The schema uses Flink's row-field syntax, and its
 * columns may have the types STRING, BIGINT, INT, DOUBLE, FLOAT and BOOLEAN. Output columns are
 * nullable whatever the schema declares. The optional {@code line_bytes BYTES} argument takes the
 * column of the same name of the {@code pyscoring-lines} source: when {@code line} is NULL and
 * {@code line_bytes} is not, the error code is INVALID_UTF8 instead of NULL_LINE. The job
 * parameter {@code parse.max-field-chars} sets the maximum field length (default {@value
 * DelimitedLineParser#DEFAULT_MAX_FIELD_CHARS}). On success {@code error_code} and {@code error}
 * are NULL.
 * On failure every schema column is NULL, {@code error_code} is a {@link ParseErrorCode} name and
 * {@code error} names the column and value. {@link DelimitedLineParser} documents the rules.
 *
 * <p>The planner calls {@link #getTypeInference} on the client. The task thread calls {@link
 * #eval} for every input row.
 */
public final class ParseFunction extends TableFunction<Row> {

    private static final long serialVersionUID = 1L;

    /** SQL name of the function in pyscoring jobs. */
    public static final String NAME = "pyscoring_parse";

    public static final String ERROR_CODE_COLUMN = "error_code";
    public static final String ERROR_COLUMN = "error";

    private static final String[] ARGUMENT_NAMES = {"line", "schema", "delimiter", "line_bytes"};
    private static final int REQUIRED_ARGUMENTS = 3;
    private static final String SCHEMA_EXAMPLE = "'age BIGINT, workclass STRING'";

    private transient DelimitedLineParser parser;
    private transient String parserSchema;
    private transient String parserDelimiter;
    private transient int maxFieldChars;

    @Override
    public void open(FunctionContext context) throws Exception {
        maxFieldChars =
                ScoringOptions.fromLookup(key -> context.getJobParameter(key, null)).maxFieldChars;
    }

    /**
     * Parses {@code line} and emits one row.
     *
     * @param line the line, or null
     * @param schema the schema literal, the same on every call
     * @param delimiter the delimiter literal, the same on every call
     */
    public void eval(String line, String schema, String delimiter) {
        eval(line, schema, delimiter, null);
    }

    /**
     * Parses {@code line}, or reports {@code lineBytes} as invalid UTF-8 when {@code line} is
     * null, and emits one row.
     */
    public void eval(String line, String schema, String delimiter, byte[] lineBytes) {
        DelimitedLineParser lineParser = parserFor(schema, delimiter);
        ParsedLine parsed = lineParser.parse(line, lineBytes);

        int columnCount = lineParser.columns().size();
        Object[] fields = new Object[columnCount + 2];
        for (int i = 0; i < columnCount; i++) {
            fields[i] = parsed.values().get(i);
        }
        if (!parsed.isValid()) {
            fields[columnCount] = parsed.errorCode().name();
            fields[columnCount + 1] = parsed.error();
        }
        collect(Row.of(fields));
    }

    private DelimitedLineParser parserFor(String schema, String delimiter) {
        if (parser == null || !schema.equals(parserSchema) || !delimiter.equals(parserDelimiter)) {
            LogicalType rowType =
                    LogicalTypeParser.parse(toRowTypeString(schema), getClass().getClassLoader());
            int maxChars =
                    maxFieldChars > 0 ? maxFieldChars : DelimitedLineParser.DEFAULT_MAX_FIELD_CHARS;
            parser = new DelimitedLineParser(columnsOf(rowType), delimiter, maxChars);
            parserSchema = schema;
            parserDelimiter = delimiter;
        }
        return parser;
    }

    @Override
    public TypeInference getTypeInference(DataTypeFactory typeFactory) {
        return TypeInference.newBuilder()
                .inputTypeStrategy(new ArgumentStrategy())
                .outputTypeStrategy(ParseFunction::inferOutputType)
                .build();
    }

    private static Optional<DataType> inferOutputType(CallContext callContext) {
        List<Column> columns = columnsOf(callContext);
        return Optional.of(outputType(columns));
    }

    /** Returns the output row type: the schema columns, nullable, then the two error columns. */
    static DataType outputType(List<Column> columns) {
        List<DataTypes.Field> fields = new ArrayList<>(columns.size() + 2);
        for (Column column : columns) {
            fields.add(DataTypes.FIELD(column.name(), dataTypeOf(column.type())));
        }
        fields.add(DataTypes.FIELD(ERROR_CODE_COLUMN, DataTypes.STRING()));
        fields.add(DataTypes.FIELD(ERROR_COLUMN, DataTypes.STRING()));
        return DataTypes.ROW(fields);
    }

    private static DataType dataTypeOf(ColumnType type) {
        switch (type) {
            case STRING:
                return DataTypes.STRING();
            case BIGINT:
                return DataTypes.BIGINT();
            case INT:
                return DataTypes.INT();
            case DOUBLE:
                return DataTypes.DOUBLE();
            case FLOAT:
                return DataTypes.FLOAT();
            case BOOLEAN:
                return DataTypes.BOOLEAN();
            default:
                throw new IllegalStateException("Unhandled column type " + type);
        }
    }

    /**
     * Reads and checks the literal arguments of a call at planning time.
     *
     * @throws ValidationException if schema or delimiter is not a literal, the schema does not
     *     parse, or a column has an unsupported type
     */
    private static List<Column> columnsOf(CallContext callContext) {
        String schema = literalArgument(callContext, 1);
        String delimiter = literalArgument(callContext, 2);
        if (delimiter.isEmpty()) {
            throw new ValidationException(
                    NAME + ": argument 'delimiter' is empty. Pass the text between fields, for"
                            + " example ', '.");
        }

        DataType rowType;
        try {
            rowType = callContext.getDataTypeFactory().createDataType(toRowTypeString(schema));
        } catch (RuntimeException e) {
            throw new ValidationException(
                    NAME + ": argument 'schema' is invalid: '" + schema + "'. Use Flink's"
                            + " row-field syntax, for example " + SCHEMA_EXAMPLE + ".",
                    e);
        }
        return columnsOf(rowType.getLogicalType());
    }

    private static String literalArgument(CallContext callContext, int index) {
        String name = ARGUMENT_NAMES[index];
        if (!callContext.isArgumentLiteral(index) || callContext.isArgumentNull(index)) {
            throw new ValidationException(
                    NAME + ": argument '" + name + "' must be a string literal, because it"
                            + " fixes the output columns when the statement is planned. Write"
                            + " it in quotes, for example " + exampleFor(index) + ".");
        }
        Optional<String> value = callContext.getArgumentValue(index, String.class);
        if (value.isEmpty()) {
            throw new ValidationException(
                    NAME + ": argument '" + name + "' must be a string literal, got a literal of"
                            + " type " + callContext.getArgumentDataTypes().get(index) + ".");
        }
        return value.get();
    }

    private static String exampleFor(int index) {
        return index == 1 ? SCHEMA_EXAMPLE : "', '";
    }

    private static String toRowTypeString(String schema) {
        return "ROW<" + schema + ">";
    }

    /**
     * Converts the parsed schema to parser columns.
     *
     * @throws ValidationException naming the first column with an unsupported type or a reserved
     *     name
     */
    static List<Column> columnsOf(LogicalType schemaType) {
        if (!(schemaType instanceof RowType) || ((RowType) schemaType).getFieldCount() == 0) {
            throw new ValidationException(
                    NAME + ": argument 'schema' has no columns. Pass at least one, for example "
                            + SCHEMA_EXAMPLE + ".");
        }
        List<Column> columns = new ArrayList<>();
        for (RowType.RowField field : ((RowType) schemaType).getFields()) {
            String name = field.getName();
            if (name.equals(ERROR_CODE_COLUMN) || name.equals(ERROR_COLUMN)) {
                throw new ValidationException(
                        NAME + ": schema column '" + name + "' clashes with an output column of"
                                + " the same name. Rename it.");
            }
            columns.add(new Column(name, columnTypeOf(name, field.getType())));
        }
        return columns;
    }

    private static ColumnType columnTypeOf(String name, LogicalType type) {
        LogicalTypeRoot root = type.getTypeRoot();
        if (type.copy(true).equals(DataTypes.STRING().getLogicalType())) {
            return ColumnType.STRING;
        }
        switch (root) {
            case BIGINT:
                return ColumnType.BIGINT;
            case INTEGER:
                return ColumnType.INT;
            case DOUBLE:
                return ColumnType.DOUBLE;
            case FLOAT:
                return ColumnType.FLOAT;
            case BOOLEAN:
                return ColumnType.BOOLEAN;
            default:
                throw new ValidationException(
                        NAME + ": schema column '" + name + "' has type " + type.asSummaryString()
                                + ", which is not supported. Supported types: STRING, BIGINT,"
                                + " INT, DOUBLE, FLOAT, BOOLEAN.");
        }
    }

    /**
     * Accepts (character string or NULL, string literal, string literal [, binary string or
     * NULL]) and casts to (STRING, STRING, STRING [, BYTES]).
     */
    private static final class ArgumentStrategy implements InputTypeStrategy {

        @Override
        public ArgumentCount getArgumentCount() {
            return ConstantArgumentCount.between(REQUIRED_ARGUMENTS, ARGUMENT_NAMES.length);
        }

        @Override
        public Optional<List<DataType>> inferInputTypes(
                CallContext callContext, boolean throwOnFailure) {
            int count = callContext.getArgumentDataTypes().size();
            if (count > REQUIRED_ARGUMENTS) {
                LogicalType type =
                        callContext.getArgumentDataTypes().get(REQUIRED_ARGUMENTS).getLogicalType();
                if (!type.is(LogicalTypeFamily.BINARY_STRING) && !type.is(LogicalTypeRoot.NULL)) {
                    return callContext.fail(throwOnFailure, "%s",
                            NAME + ": argument 'line_bytes' must be BYTES, got "
                                    + type.asSummaryString() + ".");
                }
            }
            for (int i = 0; i < REQUIRED_ARGUMENTS; i++) {
                LogicalType type = callContext.getArgumentDataTypes().get(i).getLogicalType();
                boolean isString = type.is(LogicalTypeFamily.CHARACTER_STRING);
                boolean isNull = type.is(LogicalTypeRoot.NULL);
                if (!isString && !(isNull && i == 0)) {
                    return callContext.fail(throwOnFailure, "%s",
                            NAME + ": argument '" + ARGUMENT_NAMES[i] + "' must be STRING, got "
                                    + type.asSummaryString() + ".");
                }
            }
            try {
                columnsOf(callContext);
            } catch (ValidationException e) {
                if (throwOnFailure) {
                    throw e;
                }
                return Optional.empty();
            }
            List<DataType> types =
                    new ArrayList<>(
                            List.of(DataTypes.STRING(), DataTypes.STRING(), DataTypes.STRING()));
            if (count > REQUIRED_ARGUMENTS) {
                types.add(DataTypes.BYTES());
            }
            return Optional.of(types);
        }

        @Override
        public List<Signature> getExpectedSignatures(FunctionDefinition definition) {
            return List.of(
                    Signature.of(
                            Signature.Argument.of(ARGUMENT_NAMES[0], "STRING"),
                            Signature.Argument.of(ARGUMENT_NAMES[1], "STRING"),
                            Signature.Argument.of(ARGUMENT_NAMES[2], "STRING")),
                    Signature.of(
                            Signature.Argument.of(ARGUMENT_NAMES[0], "STRING"),
                            Signature.Argument.of(ARGUMENT_NAMES[1], "STRING"),
                            Signature.Argument.of(ARGUMENT_NAMES[2], "STRING"),
                            Signature.Argument.of(ARGUMENT_NAMES[3], "BYTES")));
        }
    }
}
