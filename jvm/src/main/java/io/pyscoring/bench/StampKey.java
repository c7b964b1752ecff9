package io.pyscoring.bench;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code bench_stamp()}: returns {@code @<System.nanoTime()>} as a row key, so that {@link
 * ThroughputProbe} at the sink can compute each row's latency through the operators between
 * the two calls. Only meaningful while both run in one JVM, as in a local mini cluster.
 */
public class StampKey extends ScalarFunction {

    private static final long serialVersionUID = 1L;

    public String eval() {
        return "@" + System.nanoTime();
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
