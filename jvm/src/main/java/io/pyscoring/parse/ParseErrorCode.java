package io.pyscoring.parse;

/**
 * Reason why {@link DelimitedLineParser} rejected a line, emitted in the {@code error_code} column
 * of {@code pyscoring_parse}. The first failing check decides the code.
 */
public enum ParseErrorCode {
    /** The line is NULL and no bytes came with it. */
    NULL_LINE,
    /**
     * The line's bytes are not valid UTF-8. The {@code pyscoring-lines} source emits such a line
     * as {@code line} = NULL with its bytes in {@code line_bytes}.
     */
    INVALID_UTF8,
    /** The line is empty or contains only whitespace. */
    EMPTY_LINE,
    /** The line splits into more or fewer fields than the schema has columns. */
    FIELD_COUNT,
    /** A field is longer than the parser's maximum field length. */
    FIELD_TOO_LONG,
    /** The line repeats the column names, as a header line of a delimited file does. */
    HEADER_LINE,
    /** A numeric column contains text that is not a number of the column's type. */
    NOT_A_NUMBER,
    /** An integer does not fit BIGINT or INT, or a number does not fit FLOAT or DOUBLE. */
    OUT_OF_RANGE,
    /** A numeric column contains NaN, Infinity or -Infinity. */
    NOT_FINITE,
    /** A BOOLEAN column contains text that is not an accepted spelling of true or false. */
    NOT_A_BOOLEAN
}
