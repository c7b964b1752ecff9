package io.pyscoring.parse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pyscoring.parse.DelimitedLineParser.Column;
import io.pyscoring.parse.DelimitedLineParser.ColumnType;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;

/** Reason codes of the input lines that deploy routes to the dead letters. */
class BadInputTest {

    private static final List<Column> COLUMNS =
            List.of(
                    new Column("age", ColumnType.BIGINT),
                    new Column("workclass", ColumnType.STRING),
                    new Column("hours-per-week", ColumnType.INT),
                    new Column("weight", ColumnType.FLOAT));

    private static final DelimitedLineParser PARSER = new DelimitedLineParser(COLUMNS, ",", 1000);

    @Test
    void fieldOverMaximumIsTooLong() {
        ParsedLine parsed = PARSER.parse("39," + "x".repeat(1001) + ",40,1.5");
        assertEquals(ParseErrorCode.FIELD_TOO_LONG, parsed.errorCode());
        assertTrue(parsed.error().contains("'workclass'"), parsed.error());
        assertTrue(parsed.error().contains("1001 characters"), parsed.error());
    }

    @Test
    void fieldAtMaximumIsKept() {
        ParsedLine parsed = PARSER.parse("39," + "x".repeat(1000) + ",40,1.5");
        assertNull(parsed.errorCode(), parsed.toString());
    }

    @Test
    void megabyteNumericFieldIsTooLong() {
        ParsedLine parsed = PARSER.parse("1".repeat(1 << 20) + ", a, 40, 1.5");
        assertEquals(ParseErrorCode.FIELD_TOO_LONG, parsed.errorCode());
        assertTrue(parsed.error().length() < 300, "the reason quotes no megabyte field");
    }

    @Test
    void headerLineIsRecognized() {
        ParsedLine parsed = PARSER.parse("Age, workclass, hours_per_week, WEIGHT");
        assertEquals(ParseErrorCode.HEADER_LINE, parsed.errorCode());
    }

    @Test
    void headerWithOneOtherNameIsNotANumber() {
        ParsedLine parsed = PARSER.parse("age, workclass, hours, weight");
        assertEquals(ParseErrorCode.NOT_A_NUMBER, parsed.errorCode());
    }

    @Test
    void invalidUtf8NamesOffsetOfFirstBadByte() {
        byte[] bytes = "39, caf".getBytes(StandardCharsets.UTF_8);
        byte[] line = new byte[bytes.length + 2];
        System.arraycopy(bytes, 0, line, 0, bytes.length);
        line[bytes.length] = (byte) 0xe9;
        line[bytes.length + 1] = ',';
        ParsedLine parsed = PARSER.parse(null, line);
        assertEquals(ParseErrorCode.INVALID_UTF8, parsed.errorCode());
        assertTrue(parsed.error().contains("byte 0xe9 at byte offset 7"), parsed.error());
    }

    @Test
    void nullLineWithoutBytesIsNullLine() {
        assertEquals(ParseErrorCode.NULL_LINE, PARSER.parse(null, null).errorCode());
    }

    @Test
    void textWinsOverBytes() {
        ParsedLine parsed = PARSER.parse("39, a, 40, 1.5", new byte[] {(byte) 0xff});
        assertNull(parsed.errorCode(), parsed.toString());
    }

    @Test
    void escapeKeepsValidTextAndMarksBadBytes() {
        byte[] line = {'a', '\\', (byte) 0xc3, (byte) 0xa9, (byte) 0xff, 'b', (byte) 0xc3};
        assertEquals("a\\\\\u00e9\\xffb\\xc3", Utf8Bytes.escape(line));
    }

    @Test
    void escapeOfValidUtf8IsTheText() {
        String text = "plain, \u00fcml\u00e4ut, \ud83d\ude00";
        assertEquals(text, Utf8Bytes.escape(text.getBytes(StandardCharsets.UTF_8)));
        assertEquals(-1, Utf8Bytes.firstInvalidOffset(text.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void escapeFunctionPassesNull() {
        assertNull(new EscapeBytesFunction().eval(null));
    }
}
