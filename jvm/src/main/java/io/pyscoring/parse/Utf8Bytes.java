package io.pyscoring.parse;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/** Strict UTF-8 checks of raw line bytes, for lines that the source could not decode. */
public final class Utf8Bytes {

    private Utf8Bytes() {}

    /**
     * Returns the bytes as text: valid UTF-8 sequences decoded, each byte of an invalid sequence
     * written as {@code \xNN} (two lowercase hex digits) and each backslash doubled, so the bytes
     * can be recovered from the text.
     */
    public static String escape(byte[] bytes) {
        CharsetDecoder decoder = newDecoder();
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer out = CharBuffer.allocate(Math.max(16, bytes.length));
        StringBuilder text = new StringBuilder(bytes.length + 16);
        while (true) {
            CoderResult result = decoder.decode(in, out, true);
            appendEscaped(text, out);
            if (result.isError()) {
                for (int i = 0; i < result.length(); i++) {
                    text.append(String.format("\\x%02x", in.get() & 0xff));
                }
            } else if (result.isUnderflow()) {
                break;
            }
        }
        decoder.flush(out);
        appendEscaped(text, out);
        return text.toString();
    }

    /**
     * Returns the byte offset of the first invalid UTF-8 sequence, or -1 when all bytes are
     * valid UTF-8.
     */
    public static int firstInvalidOffset(byte[] bytes) {
        CharsetDecoder decoder = newDecoder();
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer out = CharBuffer.allocate(Math.max(16, bytes.length));
        while (true) {
            CoderResult result = decoder.decode(in, out, true);
            if (result.isError()) {
                return in.position();
            }
            if (result.isUnderflow()) {
                return -1;
            }
            out.clear();
        }
    }

    private static CharsetDecoder newDecoder() {
        return StandardCharsets.UTF_8
                .newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
    }

    private static void appendEscaped(StringBuilder text, CharBuffer out) {
        out.flip();
        while (out.hasRemaining()) {
            char c = out.get();
            if (c == '\\') {
                text.append("\\\\");
            } else {
                text.append(c);
            }
        }
        out.clear();
    }
}
