package io.pyscoring.source;

import org.apache.flink.runtime.throwable.ThrowableAnnotation;
import org.apache.flink.runtime.throwable.ThrowableType;

import java.io.IOException;

/**
 * Raised at job start when the {@code path} option of {@code pyscoring-lines} names nothing that
 * the source can read.
 *
 * <p>The annotation marks it as non-recoverable, so Flink fails the job at once instead of
 * restarting it under its restart strategy, because a restart would fail in the same way.
 */
@ThrowableAnnotation(ThrowableType.NonRecoverableError)
public final class InvalidSourcePathException extends IOException {

    private static final long serialVersionUID = 1L;

    public InvalidSourcePathException(String message) {
        super(message);
    }
}
