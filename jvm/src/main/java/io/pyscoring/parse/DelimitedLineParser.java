package io.pyscoring.parse;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Splits a delimited text line into typed values, with no dependency on Flink.
 *
 * <p>Rules, in the order they are checked:
 *
 * <ol>
 *   <li>A NULL line is {@link ParseErrorCode#NULL_LINE}, or {@link ParseErrorCode#INVALID_UTF8}
 *       when {@link #parse(String, byte[])} gets the line's undecodable bytes. A line that is
 *       empty or only whitespace is {@link ParseErrorCode#EMPTY_LINE}.
 *   <li>The line is split at every occurrence of the delimiter, taken literally, and empty fields
 *       count, so "a,,b" has three fields. A field count other than the column count is {@link
 *       ParseErrorCode#FIELD_COUNT}.
 *   <li>A field longer than the maximum field length, in UTF-16 chars before stripping, is {@link
 *       ParseErrorCode#FIELD_TOO_LONG}.
 *   <li>Each field is stripped of leading and trailing whitespace ({@link String#strip()}) and
 *       converted by its column type, from left to right. The first field that fails decides the
 *       error code, unless every field equals its column's name (ignoring case, with "-" and
 *       " " taken as "_"): such a line is a header line and gets {@link
 *       ParseErrorCode#HEADER_LINE}.
 * </ol>
 *
 * <p>Conversions:
 *
 * <ul>
 *   <li>STRING keeps the stripped text, including "?" and "".
 *   <li>In every other type, a field of only "?" is NULL without error, because the UCI Adult data
 *       set marks a missing value with "?".
 *   <li>BIGINT and INT take an optional sign and ASCII digits. Text in any other form is {@link
 *       ParseErrorCode#NOT_A_NUMBER}, and a value outside the type's range is {@link
 *       ParseErrorCode#OUT_OF_RANGE}.
 *   <li>DOUBLE and FLOAT take decimal notation with an optional exponent, such as "-1.5e3" or
 *       ".5". NaN, Inf and Infinity with any sign and case are {@link ParseErrorCode#NOT_FINITE}
 *       (in BIGINT and INT too). A finite number too large for the type is {@link
 *       ParseErrorCode#OUT_OF_RANGE}. Java-only forms such as "1f" or hexadecimal are {@link
 *       ParseErrorCode#NOT_A_NUMBER}.
 *   <li>BOOLEAN takes, in any case, true/t/yes/y/1 and false/f/no/n/0, the spellings that Flink
 *       2.3's CAST(... AS BOOLEAN) accepts. Anything else is {@link
 *       ParseErrorCode#NOT_A_BOOLEAN}.
 * </ul>
 *
 * <p>Error messages quote the value, cut to {@value #MAX_QUOTED_CHARS} characters. Instances are
 * immutable and thread-safe.
 */
public final class DelimitedLineParser {

    /** Column types that the parser converts to. */
    public enum ColumnType {
        STRING,
        BIGINT,
        INT,
        DOUBLE,
        FLOAT,
        BOOLEAN
    }

    /** A named, typed column of the schema. */
    public record Column(String name, ColumnType type) {
        public Column {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(type, "type");
        }
    }

    /** Maximum characters of a field value quoted in an error message. */
    public static final int MAX_QUOTED_CHARS = 100;

    /** Maximum length of one field, in UTF-16 chars, unless the constructor sets another. */
    public static final int DEFAULT_MAX_FIELD_CHARS = 65536;

    static final String MISSING_MARKER = "?";

    private static final Pattern INTEGER = Pattern.compile("[+-]?[0-9]+");
    private static final Pattern DECIMAL =
            Pattern.compile("[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?");
    private static final Pattern NOT_FINITE =
            Pattern.compile("[+-]?(nan|inf|infinity)", Pattern.CASE_INSENSITIVE);
    private static final Set<String> TRUE_SPELLINGS = Set.of("true", "t", "yes", "y", "1");
    private static final Set<String> FALSE_SPELLINGS = Set.of("false", "f", "no", "n", "0");

    private final List<Column> columns;
    private final String delimiter;
    private final int maxFieldChars;

    /**
     * Creates a parser.
     *
     * @throws IllegalArgumentException if there are no columns, two columns share a name, or the
     *     delimiter is empty
     */
    public DelimitedLineParser(List<Column> columns, String delimiter) {
        this(columns, delimiter, DEFAULT_MAX_FIELD_CHARS);
    }

    /**
     * Creates a parser that rejects fields longer than {@code maxFieldChars} UTF-16 chars.
     *
     * @throws IllegalArgumentException if there are no columns, two columns share a name, the
     *     delimiter is empty or {@code maxFieldChars} is below 1
     */
    public DelimitedLineParser(List<Column> columns, String delimiter, int maxFieldChars) {
        if (maxFieldChars < 1) {
            throw new IllegalArgumentException(
                    "The maximum field length must be at least 1, got " + maxFieldChars);
        }
        if (columns.isEmpty()) {
            throw new IllegalArgumentException("The schema needs at least one column");
        }
        Set<String> names = new HashSet<>();
        for (Column column : columns) {
            if (!names.add(column.name())) {
                throw new IllegalArgumentException(
                        "The schema has two columns named '" + column.name() + "'");
            }
        }
        if (delimiter == null || delimiter.isEmpty()) {
            throw new IllegalArgumentException("The delimiter must not be empty");
        }
        this.columns = List.copyOf(columns);
        this.delimiter = delimiter;
        this.maxFieldChars = maxFieldChars;
    }

    public List<Column> columns() {
        return columns;
    }

    public String delimiter() {
        return delimiter;
    }

    public int maxFieldChars() {
        return maxFieldChars;
    }

    /**
     * Parses one line, given as text or, when it is not valid UTF-8, as its bytes with {@code
     * line} NULL. Never throws for bad input.
     */
    public ParsedLine parse(String line, byte[] lineBytes) {
        if (line == null && lineBytes != null) {
            int offset = Utf8Bytes.firstInvalidOffset(lineBytes);
            String where =
                    offset < 0
                            ? ""
                            : ": byte 0x"
                                    + String.format("%02x", lineBytes[offset] & 0xff)
                                    + " at byte offset "
                                    + offset
                                    + " starts no valid UTF-8 sequence";
            return invalid(ParseErrorCode.INVALID_UTF8,
                    "the line (" + lineBytes.length + " bytes) is not valid UTF-8" + where
                            + "; re-encode the input as UTF-8");
        }
        return parse(line);
    }

    /** Parses one line. Never throws for bad input: the result carries the error instead. */
    public ParsedLine parse(String line) {
        if (line == null) {
            return invalid(ParseErrorCode.NULL_LINE,
                    "the line is NULL, which the pyscoring-lines source emits for a line that is"
                            + " not valid UTF-8");
        }
        if (line.isBlank()) {
            return invalid(ParseErrorCode.EMPTY_LINE, "the line is empty or only whitespace");
        }

        List<String> fields = split(line);
        if (fields.size() != columns.size()) {
            return invalid(ParseErrorCode.FIELD_COUNT,
                    "expected " + columns.size() + " fields, got " + fields.size()
                            + " when splitting at " + quote(delimiter));
        }

        for (int i = 0; i < fields.size(); i++) {
            int length = fields.get(i).length();
            if (length > maxFieldChars) {
                Column column = columns.get(i);
                return invalid(ParseErrorCode.FIELD_TOO_LONG,
                        "column '" + column.name() + "' (" + column.type() + "): the field has "
                                + length + " characters, above the maximum of " + maxFieldChars
                                + "; shorten it or raise parse.max-field-chars");
            }
        }

        Object[] values = new Object[columns.size()];
        for (int i = 0; i < values.length; i++) {
            Column column = columns.get(i);
            String field = fields.get(i).strip();
            try {
                values[i] = convert(column.type(), field);
            } catch (FieldException e) {
                if (isHeader(fields)) {
                    return invalid(ParseErrorCode.HEADER_LINE,
                            "the line repeats the column names, as a header line does; remove"
                                    + " header lines from the input");
                }
                return invalid(e.errorCode,
                        "column '" + column.name() + "' (" + column.type() + "): "
                                + quote(field) + " " + e.reason);
            }
        }
        return ParsedLine.valid(values);
    }

    private boolean isHeader(List<String> fields) {
        for (int i = 0; i < fields.size(); i++) {
            if (!normalizedName(fields.get(i).strip())
                    .equals(normalizedName(columns.get(i).name()))) {
                return false;
            }
        }
        return true;
    }

    private static String normalizedName(String name) {
        return name.toLowerCase(Locale.ROOT).replace('-', '_').replace(' ', '_');
    }

    private List<String> split(String line) {
        List<String> fields = new ArrayList<>(columns.size());
        int start = 0;
        int end;
        while ((end = line.indexOf(delimiter, start)) >= 0) {
            fields.add(line.substring(start, end));
            start = end + delimiter.length();
        }
        fields.add(line.substring(start));
        return fields;
    }

    private static Object convert(ColumnType type, String field) throws FieldException {
        if (type == ColumnType.STRING) {
            return field;
        }
        if (field.equals(MISSING_MARKER)) {
            return null;
        }
        switch (type) {
            case BIGINT:
                return parseLong(field);
            case INT:
                return parseInt(field);
            case DOUBLE:
                return parseDouble(field);
            case FLOAT:
                return parseFloat(field);
            case BOOLEAN:
                return parseBoolean(field);
            default:
                throw new IllegalStateException("Unhandled column type " + type);
        }
    }

    private static long parseLong(String field) throws FieldException {
        checkInteger(field, ColumnType.BIGINT);
        try {
            return Long.parseLong(field);
        } catch (NumberFormatException e) {
            throw outOfRange(ColumnType.BIGINT);
        }
    }

    private static int parseInt(String field) throws FieldException {
        checkInteger(field, ColumnType.INT);
        try {
            return Integer.parseInt(field);
        } catch (NumberFormatException e) {
            throw outOfRange(ColumnType.INT);
        }
    }

    private static void checkInteger(String field, ColumnType type) throws FieldException {
        if (NOT_FINITE.matcher(field).matches()) {
            throw notFinite();
        }
        if (!INTEGER.matcher(field).matches()) {
            throw new FieldException(ParseErrorCode.NOT_A_NUMBER,
                    "is not a valid " + type + " (an integer without fraction or exponent)");
        }
    }

    private static double parseDouble(String field) throws FieldException {
        checkDecimal(field, ColumnType.DOUBLE);
        double value = Double.parseDouble(field);
        if (Double.isInfinite(value)) {
            throw outOfRange(ColumnType.DOUBLE);
        }
        return value;
    }

    private static float parseFloat(String field) throws FieldException {
        checkDecimal(field, ColumnType.FLOAT);
        float value = Float.parseFloat(field);
        if (Float.isInfinite(value)) {
            throw outOfRange(ColumnType.FLOAT);
        }
        return value;
    }

    private static void checkDecimal(String field, ColumnType type) throws FieldException {
        if (NOT_FINITE.matcher(field).matches()) {
            throw notFinite();
        }
        if (!DECIMAL.matcher(field).matches()) {
            throw new FieldException(ParseErrorCode.NOT_A_NUMBER,
                    "is not a valid " + type + " (a decimal number such as -1.5 or 2e3)");
        }
    }

    private static boolean parseBoolean(String field) throws FieldException {
        String lower = field.toLowerCase(Locale.ROOT);
        if (TRUE_SPELLINGS.contains(lower)) {
            return true;
        }
        if (FALSE_SPELLINGS.contains(lower)) {
            return false;
        }
        throw new FieldException(ParseErrorCode.NOT_A_BOOLEAN,
                "is not a valid BOOLEAN (true/t/yes/y/1 or false/f/no/n/0)");
    }

    private static FieldException outOfRange(ColumnType type) {
        return new FieldException(ParseErrorCode.OUT_OF_RANGE, "is out of the range of " + type);
    }

    private static FieldException notFinite() {
        return new FieldException(ParseErrorCode.NOT_FINITE,
                "is not a finite number, and numeric columns reject NaN and infinities");
    }

    private ParsedLine invalid(ParseErrorCode errorCode, String error) {
        return ParsedLine.invalid(columns.size(), errorCode, error);
    }

    /**
     * Quotes a value for an error message, cut to {@value #MAX_QUOTED_CHARS} code points with
     * "..." after the quote when cut.
     */
    static String quote(String value) {
        if (value.codePointCount(0, value.length()) <= MAX_QUOTED_CHARS) {
            return "'" + value + "'";
        }
        int end = value.offsetByCodePoints(0, MAX_QUOTED_CHARS);
        return "'" + value.substring(0, end) + "'... (cut to " + MAX_QUOTED_CHARS
                + " of " + value.codePointCount(0, value.length()) + " characters)";
    }

    /** Failure to convert one field, turned into a {@link ParsedLine} by the caller. */
    private static final class FieldException extends Exception {
        private static final long serialVersionUID = 1L;

        private final ParseErrorCode errorCode;
        private final String reason;

        FieldException(ParseErrorCode errorCode, String reason) {
            super(reason, null, false, false);
            this.errorCode = errorCode;
            this.reason = reason;
        }
    }
}
