package io.pyscoring.parse;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * Scalar function {@code pyscoring_escape_bytes(bytes)}: the bytes as text, with valid UTF-8
 * decoded and every other byte written as {@code \xNN}; see {@link Utf8Bytes#escape}. NULL gives
 * NULL. Deploy uses it to put an undecodable line into the {@code raw} column of a dead letter.
 */
public final class EscapeBytesFunction extends ScalarFunction {

    private static final long serialVersionUID = 1L;

    /** SQL name of the function in pyscoring jobs. */
    public static final String NAME = "pyscoring_escape_bytes";

    public String eval(@DataTypeHint("BYTES") byte[] bytes) {
        return bytes == null ? null : Utf8Bytes.escape(bytes);
    }
}
