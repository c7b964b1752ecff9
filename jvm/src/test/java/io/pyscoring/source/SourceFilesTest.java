package io.pyscoring.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.apache.flink.core.fs.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.util.List;

class SourceFilesTest {

    @TempDir java.nio.file.Path tempDir;

    private String uri(java.nio.file.Path file) {
        return new Path(file.toUri()).toString();
    }

    @Test
    void folderListsVisibleFilesByName() throws IOException {
        java.nio.file.Path b = Files.writeString(tempDir.resolve("b.csv"), "b\n");
        java.nio.file.Path a = Files.writeString(tempDir.resolve("a.csv"), "a\n");
        java.nio.file.Path c = Files.writeString(tempDir.resolve("c.csv"), "");
        Files.writeString(tempDir.resolve(".hidden"), "h\n");
        Files.createDirectory(tempDir.resolve("sub"));
        Files.writeString(tempDir.resolve("sub").resolve("d.csv"), "d\n");

        List<String> files = SourceFiles.list(tempDir.toString(), false);

        assertEquals(List.of(uri(a), uri(b), uri(c)), files);
    }

    @Test
    void singleFileListed() throws IOException {
        java.nio.file.Path file = Files.writeString(tempDir.resolve("one.txt"), "1\n");

        assertEquals(List.of(uri(file)), SourceFiles.list(file.toString(), true));
    }

    @Test
    void missingPathNamesPathAndOption() {
        String missing = tempDir.resolve("nope").toString();

        InvalidSourcePathException error =
                assertThrows(
                        InvalidSourcePathException.class, () -> SourceFiles.list(missing, false));

        assertTrue(error.getMessage().contains(missing), error.getMessage());
        assertTrue(error.getMessage().contains("'path'"), error.getMessage());
    }

    @Test
    void emptyFolderAllowedWithoutLoop() throws IOException {
        assertEquals(List.of(), SourceFiles.list(tempDir.toString(), false));
    }

    @Test
    void loopOverEmptyFilesRejected() throws IOException {
        Files.writeString(tempDir.resolve("empty.txt"), "");

        InvalidSourcePathException error =
                assertThrows(
                        InvalidSourcePathException.class,
                        () -> SourceFiles.list(tempDir.toString(), true));

        assertTrue(error.getMessage().contains("'loop'"), error.getMessage());
    }
}
