package io.pyscoring.bench;

import io.pyscoring.scoring.ModelSpec;
import io.pyscoring.scoring.TensorSpec;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import org.tensorflow.Result;
import org.tensorflow.SavedModelBundle;
import org.tensorflow.SessionFunction;
import org.tensorflow.Signature;
import org.tensorflow.Tensor;
import org.tensorflow.ndarray.Shape;
import org.tensorflow.ndarray.buffer.DataBuffers;
import org.tensorflow.proto.ConfigProto;
import org.tensorflow.types.TBool;
import org.tensorflow.types.TFloat32;
import org.tensorflow.types.TFloat64;
import org.tensorflow.types.TInt32;
import org.tensorflow.types.TInt64;
import org.tensorflow.types.TString;

/**
 * Measures TensorFlow Java alone: a tight loop of SavedModel calls over batches of rows read
 * from a delimited file, with no Flink and no batcher. This is the compute ceiling that the
 * end-to-end scorer is compared with.
 *
 * <p>Modes, each run for every batch size: {@code prebuilt} creates the input tensors once and
 * only calls the model and copies the outputs into primitive arrays. {@code rebuild} also
 * builds the input tensors on every call with the scorer's own column buffers
 * (io.pyscoring.scoring.ColumnBuffer, reached by reflection because it is package-private) and
 * boxes one value per row and output, as the scorer does, so its gap to {@code prebuilt} is the
 * cost of the Java tensor path. {@code rebuild-tfjava} builds string tensors with TensorFlow
 * Java's {@code TString.tensorOf} instead, the path the scorer used before its small-string
 * encoding.
 *
 * <p>Usage: {@code RawTensorFlowBench --model DIR --data FILE --columns a,b,c [--delimiter ,]
 * [--batch-sizes 1,64,1024] [--seconds 3] [--repeats 3] [--warmup-seconds 1] [--intra-op 0]
 * [--inter-op 0] [--modes prebuilt,rebuild,rebuild-tfjava]}. Prints one JSON object per line and repeat.
 */
public final class RawTensorFlowBench {

    private RawTensorFlowBench() {}

    /** The input columns of every row of the data file, in signature order. */
    private record Columns(List<TensorSpec> inputs, Object[] arrays, int rows) {}

    public static void main(String[] args) throws IOException {
        Map<String, String> options = parseArguments(args);
        Path modelDir = Path.of(required(options, "model"));
        Path data = Path.of(required(options, "data"));
        List<String> columnNames = List.of(required(options, "columns").split(","));
        String delimiter = options.getOrDefault("delimiter", ",");
        int[] batchSizes = parseInts(options.getOrDefault("batch-sizes", "1,64,1024"));
        double seconds = Double.parseDouble(options.getOrDefault("seconds", "3"));
        double warmupSeconds = Double.parseDouble(options.getOrDefault("warmup-seconds", "1"));
        int repeats = Integer.parseInt(options.getOrDefault("repeats", "3"));
        int intraOp = Integer.parseInt(options.getOrDefault("intra-op", "0"));
        int interOp = Integer.parseInt(options.getOrDefault("inter-op", "0"));
        List<String> modes = List.of(options.getOrDefault("modes", "prebuilt,rebuild,rebuild-tfjava").split(","));

        ModelSpec spec = ModelSpec.read(modelDir);
        int maxBatch = 0;
        for (int size : batchSizes) {
            maxBatch = Math.max(maxBatch, size);
        }
        Columns columns = readColumns(data, delimiter, columnNames, spec.inputs(), maxBatch * 4);

        ConfigProto config =
                ConfigProto.newBuilder()
                        .setIntraOpParallelismThreads(intraOp)
                        .setInterOpParallelismThreads(interOp)
                        .build();
        try (SavedModelBundle bundle =
                SavedModelBundle.loader(spec.versionDir().toString())
                        .withTags(SavedModelBundle.DEFAULT_TAG)
                        .withConfigProto(config)
                        .load()) {
            SessionFunction function = bundle.function(Signature.DEFAULT_KEY);
            for (int batchSize : batchSizes) {
                for (String mode : modes) {
                    Loop loop = new Loop(function, spec, columns, batchSize, mode);
                    try {
                        loop.run(warmupSeconds);
                        for (int repeat = 0; repeat < repeats; repeat++) {
                            long cpuBefore = processCpuNanos();
                            long start = System.nanoTime();
                            long rows = loop.run(seconds);
                            long elapsed = System.nanoTime() - start;
                            long cpu = processCpuNanos() - cpuBefore;
                            System.out.println(
                                    String.format(
                                            Locale.ROOT,
                                            "{\"model\": \"%s\", \"batch_size\": %d, \"mode\": \"%s\","
                                                    + " \"repeat\": %d, \"rows\": %d, \"seconds\": %.4f,"
                                                    + " \"rows_per_second\": %.1f, \"cpu_cores\": %.3f,"
                                                    + " \"intra_op\": %d, \"inter_op\": %d}",
                                            spec.modelName(),
                                            batchSize,
                                            mode,
                                            repeat,
                                            rows,
                                            elapsed / 1e9,
                                            rows / (elapsed / 1e9),
                                            (double) cpu / elapsed,
                                            intraOp,
                                            interOp));
                            System.out.flush();
                        }
                    } finally {
                        loop.close();
                    }
                }
            }
        }
    }

    /** Calls the model on rotating batches of one size. */
    private static final class Loop implements AutoCloseable {
        private final SessionFunction function;
        private final ModelSpec spec;
        private final Columns columns;
        private final int batchSize;
        private final boolean rebuild;
        private final ScorerColumns scorerColumns;
        private final List<Map<String, Tensor>> prebuilt = new ArrayList<>();
        private final int batches;
        private int next;
        /** Keeps the boxed outputs reachable so the JIT cannot drop the boxing. */
        private Object sink;

        Loop(SessionFunction function, ModelSpec spec, Columns columns, int batchSize, String mode) {
            if (!List.of("prebuilt", "rebuild", "rebuild-tfjava").contains(mode)) {
                throw new IllegalArgumentException("Unknown mode '" + mode + "'");
            }
            this.function = function;
            this.spec = spec;
            this.columns = columns;
            this.batchSize = batchSize;
            this.rebuild = !mode.equals("prebuilt");
            this.batches = Math.max(1, columns.rows() / batchSize);
            this.scorerColumns = mode.equals("rebuild") ? new ScorerColumns(columns, batchSize) : null;
            if (!rebuild) {
                for (int b = 0; b < batches; b++) {
                    prebuilt.add(feeds(b * batchSize));
                }
            }
        }

        /** Runs batches for about {@code seconds}; returns the rows scored. */
        long run(double seconds) {
            long deadline = System.nanoTime() + (long) (seconds * 1e9);
            long rows = 0;
            do {
                int batch = next;
                next = (next + 1) % batches;
                if (rebuild) {
                    Map<String, Tensor> feeds =
                            scorerColumns != null
                                    ? scorerColumns.feeds(batch * batchSize)
                                    : feeds(batch * batchSize);
                    try {
                        call(feeds);
                    } finally {
                        feeds.values().forEach(Tensor::close);
                    }
                } else {
                    call(prebuilt.get(batch));
                }
                rows += batchSize;
            } while (System.nanoTime() < deadline);
            return rows;
        }

        private void call(Map<String, Tensor> feeds) {
            try (Result result = function.call(feeds)) {
                for (TensorSpec output : spec.outputs()) {
                    Tensor tensor = result.get(output.name()).orElseThrow();
                    sink = readOutput(output, tensor, rebuild);
                }
            }
        }

        private Map<String, Tensor> feeds(int from) {
            Map<String, Tensor> feeds = new LinkedHashMap<>();
            List<TensorSpec> inputs = columns.inputs();
            for (int i = 0; i < inputs.size(); i++) {
                feeds.put(inputs.get(i).name(), tensorOf(columns.arrays()[i], from, batchSize));
            }
            return feeds;
        }

        @Override
        public void close() {
            for (Map<String, Tensor> feeds : prebuilt) {
                feeds.values().forEach(Tensor::close);
            }
        }
    }

    /**
     * The scorer's column buffers (io.pyscoring.scoring.ColumnBuffer), one per input, refilled
     * from boxed values before every call, as the scorer's eval fills them from Flink's rows.
     */
    private static final class ScorerColumns {
        private final Columns columns;
        private final int batchSize;
        private final Object[] buffers;
        private final Method set;
        private final Method toTensor;

        ScorerColumns(Columns columns, int batchSize) {
            this.columns = columns;
            this.batchSize = batchSize;
            try {
                Class<?> type = Class.forName("io.pyscoring.scoring.ColumnBuffer");
                Method create =
                        type.getDeclaredMethod("create", io.pyscoring.scoring.TensorType.class, int.class);
                set = type.getDeclaredMethod("set", int.class, Object.class);
                toTensor = type.getDeclaredMethod("toTensor", int.class, int.class);
                create.setAccessible(true);
                set.setAccessible(true);
                toTensor.setAccessible(true);
                buffers = new Object[columns.inputs().size()];
                for (int i = 0; i < buffers.length; i++) {
                    buffers[i] = create.invoke(null, columns.inputs().get(i).type(), batchSize);
                }
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException("Cannot reach the scorer's ColumnBuffer", e);
            }
        }

        Map<String, Tensor> feeds(int from) {
            Map<String, Tensor> feeds = new LinkedHashMap<>();
            try {
                for (int i = 0; i < buffers.length; i++) {
                    Object array = columns.arrays()[i];
                    for (int row = 0; row < batchSize; row++) {
                        set.invoke(buffers[i], row, java.lang.reflect.Array.get(array, from + row));
                    }
                    feeds.put(
                            columns.inputs().get(i).name(),
                            (Tensor) toTensor.invoke(buffers[i], 0, batchSize));
                }
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException("The scorer's ColumnBuffer failed", e);
            }
            return feeds;
        }
    }

    /** Builds a tensor of rows [from, from + count) with one copy, as the scorer's buffers do. */
    private static Tensor tensorOf(Object array, int from, int count) {
        Shape shape = Shape.of(count);
        if (array instanceof float[] values) {
            return TFloat32.tensorOf(shape, DataBuffers.of(values, true, false).slice(from, count));
        } else if (array instanceof double[] values) {
            return TFloat64.tensorOf(shape, DataBuffers.of(values, true, false).slice(from, count));
        } else if (array instanceof int[] values) {
            return TInt32.tensorOf(shape, DataBuffers.of(values, true, false).slice(from, count));
        } else if (array instanceof long[] values) {
            return TInt64.tensorOf(shape, DataBuffers.of(values, true, false).slice(from, count));
        } else if (array instanceof boolean[] values) {
            return TBool.tensorOf(shape, DataBuffers.of(values, true, false).slice(from, count));
        } else {
            return TString.tensorOf(shape, DataBuffers.ofObjects((String[]) array).slice(from, count));
        }
    }

    /** Copies an output into a primitive array and, with {@code box}, into one object per value. */
    private static Object readOutput(TensorSpec spec, Tensor tensor, boolean box) {
        int size = (int) tensor.shape().size();
        Object[] boxed = box ? new Object[size] : null;
        switch (spec.type()) {
            case FLOAT32 -> {
                float[] values = new float[size];
                ((TFloat32) tensor).copyTo(DataBuffers.of(values, false, false));
                if (!box) {
                    return values;
                }
                for (int i = 0; i < size; i++) boxed[i] = values[i];
            }
            case FLOAT64 -> {
                double[] values = new double[size];
                ((TFloat64) tensor).copyTo(DataBuffers.of(values, false, false));
                if (!box) {
                    return values;
                }
                for (int i = 0; i < size; i++) boxed[i] = values[i];
            }
            case INT64 -> {
                long[] values = new long[size];
                ((TInt64) tensor).copyTo(DataBuffers.of(values, false, false));
                if (!box) {
                    return values;
                }
                for (int i = 0; i < size; i++) boxed[i] = values[i];
            }
            default -> throw new IllegalArgumentException(
                    "Output '" + spec.name() + "' has dtype " + spec.type()
                            + ", which this benchmark does not read");
        }
        return boxed;
    }

    /** Reads up to {@code limit} rows of the data file into one primitive array per input. */
    private static Columns readColumns(
            Path data, String delimiter, List<String> columnNames, List<TensorSpec> inputs, int limit)
            throws IOException {
        int[] index = new int[inputs.size()];
        for (int i = 0; i < inputs.size(); i++) {
            index[i] = columnNames.indexOf(inputs.get(i).name());
            if (index[i] < 0) {
                throw new IllegalArgumentException(
                        "The model input '" + inputs.get(i).name() + "' is not among --columns "
                                + columnNames);
            }
        }
        List<String[]> rows = new ArrayList<>();
        Pattern split = Pattern.compile(Pattern.quote(delimiter));
        for (String line : Files.readAllLines(data, StandardCharsets.UTF_8)) {
            if (rows.size() == limit) {
                break;
            }
            if (line.isBlank() || line.startsWith("|")) {
                continue;
            }
            String[] fields = split.split(line, -1);
            if (fields.length < columnNames.size()) {
                continue;
            }
            rows.add(fields);
        }
        if (rows.isEmpty()) {
            throw new IllegalArgumentException("No rows with " + columnNames.size() + " fields in " + data);
        }
        Object[] arrays = new Object[inputs.size()];
        for (int i = 0; i < inputs.size(); i++) {
            arrays[i] = column(inputs.get(i), rows, index[i]);
        }
        return new Columns(inputs, arrays, rows.size());
    }

    private static Object column(TensorSpec input, List<String[]> rows, int index) {
        int n = rows.size();
        switch (input.type()) {
            case FLOAT32 -> {
                float[] values = new float[n];
                for (int r = 0; r < n; r++) values[r] = Float.parseFloat(rows.get(r)[index].trim());
                return values;
            }
            case FLOAT64 -> {
                double[] values = new double[n];
                for (int r = 0; r < n; r++) values[r] = Double.parseDouble(rows.get(r)[index].trim());
                return values;
            }
            case INT32 -> {
                int[] values = new int[n];
                for (int r = 0; r < n; r++) values[r] = Integer.parseInt(rows.get(r)[index].trim());
                return values;
            }
            case INT64 -> {
                long[] values = new long[n];
                for (int r = 0; r < n; r++) values[r] = Long.parseLong(rows.get(r)[index].trim());
                return values;
            }
            case BOOL -> {
                boolean[] values = new boolean[n];
                for (int r = 0; r < n; r++) values[r] = Boolean.parseBoolean(rows.get(r)[index].trim());
                return values;
            }
            default -> {
                String[] values = new String[n];
                for (int r = 0; r < n; r++) values[r] = rows.get(r)[index].trim();
                return values;
            }
        }
    }

    private static long processCpuNanos() {
        var bean = ManagementFactory.getOperatingSystemMXBean();
        if (bean instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getProcessCpuTime();
        }
        return 0;
    }

    private static Map<String, String> parseArguments(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 == args.length) {
                throw new IllegalArgumentException(
                        "Expected --name value pairs, got '" + args[i] + "'");
            }
            options.put(args[i].substring(2), args[++i]);
        }
        return options;
    }

    private static String required(Map<String, String> options, String name) {
        String value = options.get(name);
        if (value == null) {
            throw new IllegalArgumentException("Missing option --" + name);
        }
        return value;
    }

    private static int[] parseInts(String text) {
        String[] parts = text.split(",");
        int[] values = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            values[i] = Integer.parseInt(parts[i].trim());
        }
        return values;
    }
}
