package io.pyscoring.source;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;

/** Options of the {@code pyscoring-lines} connector, set in the WITH clause of CREATE TABLE. */
public final class LinesSourceOptions {

    public static final ConfigOption<String> PATH =
            ConfigOptions.key("path")
                    .stringType()
                    .noDefaultValue()
                    .withDescription(
                            "File or folder to read, as a local path or a URI of a Flink file"
                                    + " system. For a folder, every file directly in it is read in"
                                    + " order of name. Subfolders and hidden files (names that"
                                    + " start with '.') are skipped. A relative path is resolved"
                                    + " against the working directory of the JobManager.");

    public static final ConfigOption<Double> ROWS_PER_SECOND =
            ConfigOptions.key("rows-per-second")
                    .doubleType()
                    .defaultValue(0.0)
                    .withDescription(
                            "Maximum rows per second for the whole source, divided evenly across"
                                    + " its parallel subtasks. 0 means no limit.");

    public static final ConfigOption<Boolean> LOOP =
            ConfigOptions.key("loop")
                    .booleanType()
                    .defaultValue(false)
                    .withDescription(
                            "Whether to start again at the first file after the last one,"
                                    + " forever. Lines of pass p > 0 get the key"
                                    + " '<file name>:<line number>#<p>'. With loop = true the"
                                    + " source is unbounded, otherwise it is bounded and the job"
                                    + " finishes after the last line.");

    private LinesSourceOptions() {}
}
