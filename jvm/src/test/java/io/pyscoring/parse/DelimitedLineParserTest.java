package io.pyscoring.parse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pyscoring.parse.DelimitedLineParser.Column;
import io.pyscoring.parse.DelimitedLineParser.ColumnType;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.Arrays;
import java.util.List;

class DelimitedLineParserTest {

    private static final String CENSUS_LINE =
            "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family,"
                    + " White, Male, 2174, 0, 40, United-States, <=50K";

    private static final List<Column> CENSUS_COLUMNS =
            List.of(
                    new Column("age", ColumnType.BIGINT),
                    new Column("workclass", ColumnType.STRING),
                    new Column("fnlwgt", ColumnType.BIGINT),
                    new Column("education", ColumnType.STRING),
                    new Column("education_num", ColumnType.INT),
                    new Column("marital_status", ColumnType.STRING),
                    new Column("occupation", ColumnType.STRING),
                    new Column("relationship", ColumnType.STRING),
                    new Column("race", ColumnType.STRING),
                    new Column("sex", ColumnType.STRING),
                    new Column("capital_gain", ColumnType.DOUBLE),
                    new Column("capital_loss", ColumnType.FLOAT),
                    new Column("hours_per_week", ColumnType.BIGINT),
                    new Column("native_country", ColumnType.STRING),
                    new Column("income", ColumnType.STRING));

    private static DelimitedLineParser parserOf(ColumnType... types) {
        Column[] columns = new Column[types.length];
        for (int i = 0; i < types.length; i++) {
            columns[i] = new Column("c" + i, types[i]);
        }
        return new DelimitedLineParser(List.of(columns), ",");
    }

    /** Parses {@code field} as the only column of the given type. */
    private static ParsedLine parseOne(ColumnType type, String field) {
        return parserOf(type).parse(field);
    }

    private static void assertAllNull(ParsedLine parsed) {
        for (Object value : parsed.values()) {
            assertNull(value, parsed.toString());
        }
    }

    @Test
    void censusLineParses() {
        DelimitedLineParser parser = new DelimitedLineParser(CENSUS_COLUMNS, ", ");

        ParsedLine parsed = parser.parse(CENSUS_LINE);

        assertTrue(parsed.isValid(), parsed.toString());
        assertNull(parsed.errorCode());
        assertNull(parsed.error());
        assertEquals(
                Arrays.asList(
                        39L, "State-gov", 77516L, "Bachelors", 13, "Never-married",
                        "Adm-clerical", "Not-in-family", "White", "Male", 2174.0, 0.0f, 40L,
                        "United-States", "<=50K"),
                parsed.values());
    }

    @Test
    void censusLineWithCommaDelimiterTrims() {
        DelimitedLineParser parser = new DelimitedLineParser(CENSUS_COLUMNS, ",");

        ParsedLine parsed = parser.parse(CENSUS_LINE);

        assertTrue(parsed.isValid(), parsed.toString());
        assertEquals("State-gov", parsed.values().get(1));
        assertEquals("<=50K", parsed.values().get(14));
    }

    @Test
    void trailingCarriageReturnTrimmed() {
        // The source strips "\r\n". A "\r" that reaches the parser is whitespace and trimmed.
        DelimitedLineParser parser = new DelimitedLineParser(CENSUS_COLUMNS, ", ");

        ParsedLine parsed = parser.parse(CENSUS_LINE + "\r");

        assertTrue(parsed.isValid(), parsed.toString());
        assertEquals("<=50K", parsed.values().get(14));
    }

    @Test
    void fieldsTrimmed() {
        DelimitedLineParser parser =
                parserOf(
                        ColumnType.STRING,
                        ColumnType.BIGINT,
                        ColumnType.DOUBLE,
                        ColumnType.BOOLEAN);

        ParsedLine parsed = parser.parse("  a b \t,\t 7 , 1.5 ,  TRUE ");

        assertEquals(Arrays.asList("a b", 7L, 1.5, true), parsed.values());
    }

    @Test
    void questionMarkNullInNumericColumns() {
        DelimitedLineParser parser =
                parserOf(
                        ColumnType.BIGINT,
                        ColumnType.INT,
                        ColumnType.DOUBLE,
                        ColumnType.FLOAT,
                        ColumnType.BOOLEAN,
                        ColumnType.STRING);

        ParsedLine parsed = parser.parse("?, ? ,?,?,?, ?");

        assertTrue(parsed.isValid(), parsed.toString());
        assertEquals(Arrays.asList(null, null, null, null, null, "?"), parsed.values());
    }

    @Test
    void emptyStringFieldKept() {
        ParsedLine parsed = parserOf(ColumnType.STRING, ColumnType.STRING).parse("a,");

        assertEquals(Arrays.asList("a", ""), parsed.values());
    }

    @Test
    void nullLine() {
        ParsedLine parsed = parserOf(ColumnType.STRING).parse(null);

        assertEquals(ParseErrorCode.NULL_LINE, parsed.errorCode());
        assertTrue(parsed.error().contains("UTF-8"), parsed.error());
        assertAllNull(parsed);
    }

    @Test
    void emptyLine() {
        assertEquals(ParseErrorCode.EMPTY_LINE, parserOf(ColumnType.STRING).parse("").errorCode());
        assertEquals(
                ParseErrorCode.EMPTY_LINE, parserOf(ColumnType.STRING).parse(" \t ").errorCode());
    }

    @Test
    void fieldCountTooFew() {
        ParsedLine parsed =
                parserOf(ColumnType.STRING, ColumnType.STRING, ColumnType.STRING).parse("a,b");

        assertEquals(ParseErrorCode.FIELD_COUNT, parsed.errorCode());
        assertTrue(parsed.error().startsWith("expected 3 fields, got 2"), parsed.error());
        assertAllNull(parsed);
    }

    @Test
    void fieldCountTooManyWithTrailingDelimiter() {
        ParsedLine parsed = parserOf(ColumnType.STRING, ColumnType.STRING).parse("a,b,");

        assertEquals(ParseErrorCode.FIELD_COUNT, parsed.errorCode());
        assertTrue(parsed.error().startsWith("expected 2 fields, got 3"), parsed.error());
    }

    @Test
    void censusLineWithCommaOnlyDelimiterMismatch() {
        DelimitedLineParser parser = new DelimitedLineParser(CENSUS_COLUMNS, ", ");

        ParsedLine parsed = parser.parse(CENSUS_LINE.replace(", ", ","));

        assertEquals(ParseErrorCode.FIELD_COUNT, parsed.errorCode());
        assertTrue(parsed.error().startsWith("expected 15 fields, got 1"), parsed.error());
    }

    @ParameterizedTest
    @CsvSource(
            delimiter = '|',
            value = {
                "BIGINT|abc",
                "BIGINT|39.0",
                "BIGINT|1e3",
                "BIGINT|0x10",
                "INT|12a",
                "INT|+",
                "DOUBLE|1.2.3",
                "DOUBLE|1f",
                "DOUBLE|0x1p3",
                "FLOAT|e5",
                "FLOAT|1d",
                "FLOAT|--1",
            })
    void notANumber(ColumnType type, String field) {
        ParsedLine parsed = parseOne(type, field);

        assertEquals(ParseErrorCode.NOT_A_NUMBER, parsed.errorCode(), parsed.toString());
        assertTrue(parsed.error().contains("column 'c0' (" + type + ")"), parsed.error());
        assertTrue(parsed.error().contains("'" + field + "'"), parsed.error());
        assertAllNull(parsed);
    }

    @Test
    void emptyFieldInNumericColumn() {
        ParsedLine parsed = parserOf(ColumnType.STRING, ColumnType.DOUBLE).parse("a, ");

        assertEquals(ParseErrorCode.NOT_A_NUMBER, parsed.errorCode());
        assertTrue(parsed.error().startsWith("column 'c1' (DOUBLE): ''"), parsed.error());
    }

    @Test
    void notANumberNamesColumnOfFirstFailure() {
        DelimitedLineParser parser =
                new DelimitedLineParser(
                        List.of(
                                new Column("age", ColumnType.BIGINT),
                                new Column("hours", ColumnType.BIGINT)),
                        ", ");

        ParsedLine parsed = parser.parse("39, forty");

        assertEquals(ParseErrorCode.NOT_A_NUMBER, parsed.errorCode());
        assertTrue(parsed.error().startsWith("column 'hours' (BIGINT): 'forty'"), parsed.error());
    }

    @Test
    void longValueCutInMessage() {
        String longValue = "x".repeat(150);

        ParsedLine parsed = parseOne(ColumnType.BIGINT, longValue);

        assertEquals(ParseErrorCode.NOT_A_NUMBER, parsed.errorCode());
        assertTrue(parsed.error().contains("'" + "x".repeat(100) + "'..."), parsed.error());
        assertFalse(parsed.error().contains("x".repeat(101)), parsed.error());
        assertTrue(parsed.error().contains("cut to 100 of 150 characters"), parsed.error());
    }

    @Test
    void cutKeepsSurrogatePairsWhole() {
        String emoji = "\uD83D\uDE00";

        String quoted = DelimitedLineParser.quote(emoji.repeat(101));

        assertTrue(quoted.startsWith("'" + emoji.repeat(100) + "'"), quoted);
    }

    @ParameterizedTest
    @CsvSource(
            delimiter = '|',
            value = {
                "BIGINT|9223372036854775808",
                "BIGINT|-9223372036854775809",
                "INT|2147483648",
                "INT|-2147483649",
                "FLOAT|3.5e38",
                "FLOAT|-1e39",
                "DOUBLE|1e309",
            })
    void outOfRange(ColumnType type, String field) {
        ParsedLine parsed = parseOne(type, field);

        assertEquals(ParseErrorCode.OUT_OF_RANGE, parsed.errorCode(), parsed.toString());
        assertTrue(parsed.error().contains("'" + field + "'"), parsed.error());
        assertAllNull(parsed);
    }

    @Test
    void rangeLimitsAccepted() {
        DelimitedLineParser parser =
                parserOf(ColumnType.BIGINT, ColumnType.INT, ColumnType.INT, ColumnType.FLOAT);

        ParsedLine parsed = parser.parse("-9223372036854775808,2147483647,+5,3.4e38");

        assertEquals(Arrays.asList(Long.MIN_VALUE, Integer.MAX_VALUE, 5, 3.4e38f), parsed.values());
    }

    @ParameterizedTest
    @CsvSource(
            delimiter = '|',
            value = {
                "DOUBLE|NaN",
                "DOUBLE|Infinity",
                "DOUBLE|-Infinity",
                "DOUBLE|inf",
                "FLOAT|-nan",
                "FLOAT|+INF",
                "BIGINT|NaN",
                "INT|-Infinity",
            })
    void notFinite(ColumnType type, String field) {
        ParsedLine parsed = parseOne(type, field);

        assertEquals(ParseErrorCode.NOT_FINITE, parsed.errorCode(), parsed.toString());
        assertTrue(parsed.error().contains("'" + field + "'"), parsed.error());
        assertAllNull(parsed);
    }

    @Test
    void decimalForms() {
        DelimitedLineParser parser =
                parserOf(ColumnType.DOUBLE, ColumnType.DOUBLE, ColumnType.DOUBLE, ColumnType.FLOAT);

        ParsedLine parsed = parser.parse(".5,-2.,1E-3,+7");

        assertEquals(Arrays.asList(0.5, -2.0, 0.001, 7.0f), parsed.values());
    }

    @Test
    void booleanSpellings() {
        DelimitedLineParser parser =
                parserOf(
                        ColumnType.BOOLEAN, ColumnType.BOOLEAN, ColumnType.BOOLEAN,
                        ColumnType.BOOLEAN, ColumnType.BOOLEAN, ColumnType.BOOLEAN);

        ParsedLine parsed = parser.parse("True,f,YES,n,1,0");

        assertEquals(Arrays.asList(true, false, true, false, true, false), parsed.values());
    }

    @Test
    void invalidBoolean() {
        ParsedLine parsed = parseOne(ColumnType.BOOLEAN, "maybe");

        assertEquals(ParseErrorCode.NOT_A_BOOLEAN, parsed.errorCode());
        assertTrue(parsed.error().contains("'maybe'"), parsed.error());
    }

    @Test
    void multiCharacterDelimiterTakenLiterally() {
        DelimitedLineParser parser =
                new DelimitedLineParser(
                        List.of(
                                new Column("a", ColumnType.STRING),
                                new Column("b", ColumnType.STRING)),
                        "|.");

        assertEquals(Arrays.asList("x", "y.z"), parser.parse("x|.y.z").values());
    }

    @Test
    void invalidConstructorArgumentsRejected() {
        List<Column> oneColumn = List.of(new Column("a", ColumnType.STRING));
        List<Column> duplicateColumns =
                List.of(new Column("a", ColumnType.STRING), new Column("a", ColumnType.INT));

        assertThrows(IllegalArgumentException.class, () -> new DelimitedLineParser(List.of(), ","));
        assertThrows(IllegalArgumentException.class, () -> new DelimitedLineParser(oneColumn, ""));
        assertThrows(
                IllegalArgumentException.class,
                () -> new DelimitedLineParser(duplicateColumns, ","));
    }
}
