package io.pyscoring.source;

import org.apache.flink.core.fs.FileStatus;
import org.apache.flink.core.fs.FileSystem;
import org.apache.flink.core.fs.Path;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** Lists the files that one {@code path} option of {@code pyscoring-lines} stands for. */
final class SourceFiles {

    private SourceFiles() {}

    /**
     * Lists the files to read, as qualified paths in reading order.
     *
     * <p>A file is returned alone. For a folder, the files directly in it are returned sorted by
     * name, without subfolders and without hidden files (names that start with '.').
     *
     * @param loop whether the source loops. A looping source needs at least one file with data,
     *     because a pass over empty files would emit nothing, forever.
     * @throws InvalidSourcePathException if the path does not exist, or if it names nothing to read
     *     in loop mode
     * @throws IOException if the file system fails
     */
    static List<String> list(String pathOption, boolean loop) throws IOException {
        Path path = new Path(pathOption);
        FileSystem fileSystem = path.getFileSystem();
        Path qualified = path.makeQualified(fileSystem);
        if (!fileSystem.exists(qualified)) {
            throw new InvalidSourcePathException(
                    "Option '"
                            + LinesSourceOptions.PATH.key()
                            + "' of connector '"
                            + LinesTableSourceFactory.IDENTIFIER
                            + "' is '"
                            + pathOption
                            + "', but "
                            + qualified
                            + " does not exist on the JobManager. Set '"
                            + LinesSourceOptions.PATH.key()
                            + "' to an existing file or folder.");
        }

        FileStatus status = fileSystem.getFileStatus(qualified);
        List<FileStatus> files = new ArrayList<>();
        if (status.isDir()) {
            for (FileStatus child : fileSystem.listStatus(qualified)) {
                if (!child.isDir() && !child.getPath().getName().startsWith(".")) {
                    files.add(child);
                }
            }
            files.sort(Comparator.comparing(child -> child.getPath().getName()));
        } else {
            files.add(status);
        }

        if (loop) {
            checkLoopHasData(pathOption, files);
        }

        List<String> paths = new ArrayList<>(files.size());
        for (FileStatus file : files) {
            paths.add(file.getPath().toString());
        }
        return paths;
    }

    private static void checkLoopHasData(String pathOption, List<FileStatus> files)
            throws InvalidSourcePathException {
        for (FileStatus file : files) {
            if (file.getLen() > 0) {
                return;
            }
        }
        throw new InvalidSourcePathException(
                "Option '"
                        + LinesSourceOptions.PATH.key()
                        + "' of connector '"
                        + LinesTableSourceFactory.IDENTIFIER
                        + "' is '"
                        + pathOption
                        + "', which contains "
                        + (files.isEmpty() ? "no files" : "only empty files")
                        + ", and '"
                        + LinesSourceOptions.LOOP.key()
                        + "' = true would loop over it forever without emitting a row. Add a"
                        + " file with at least one line or set '"
                        + LinesSourceOptions.LOOP.key()
                        + "' = false.");
    }
}
