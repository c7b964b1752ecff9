package io.pyscoring.parse;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * Outcome of parsing one line: either the typed values, or an error code with a message and every
 * value NULL.
 */
public final class ParsedLine {

    private final List<Object> values;
    private final ParseErrorCode errorCode;
    private final String error;

    private ParsedLine(Object[] values, ParseErrorCode errorCode, String error) {
        this.values = Collections.unmodifiableList(Arrays.asList(values));
        this.errorCode = errorCode;
        this.error = error;
    }

    static ParsedLine valid(Object[] values) {
        return new ParsedLine(values, null, null);
    }

    static ParsedLine invalid(int columnCount, ParseErrorCode errorCode, String error) {
        return new ParsedLine(
                new Object[columnCount],
                Objects.requireNonNull(errorCode, "errorCode"),
                Objects.requireNonNull(error, "error"));
    }

    /**
     * Returns one value per column: String, Long, Integer, Double, Float or Boolean, matching the
     * column type. A value is null for a '?' field in a non-string column and for every column of
     * an invalid line.
     */
    public List<Object> values() {
        return values;
    }

    public boolean isValid() {
        return errorCode == null;
    }

    /** Returns the error code, or null if the line parsed. */
    public ParseErrorCode errorCode() {
        return errorCode;
    }

    /** Returns a message that names the failing column and value, or null if the line parsed. */
    public String error() {
        return error;
    }

    @Override
    public String toString() {
        return isValid() ? "ParsedLine" + values : "ParsedLine{" + errorCode + ": " + error + "}";
    }
}
