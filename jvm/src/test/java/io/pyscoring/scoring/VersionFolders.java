package io.pyscoring.scoring;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.function.UnaryOperator;
import java.util.stream.Stream;

/** Writes export versions for tests the way the exporter does: a temporary folder, then a rename. */
final class VersionFolders {

    private VersionFolders() {}

    /** Copies a version folder into {@code exportDir} as version {@code version}; returns it. */
    static Path copyVersion(Path source, Path exportDir, long version) throws IOException {
        return copyVersion(source, exportDir, version, UnaryOperator.identity());
    }

    /**
     * Copies a version folder into {@code exportDir/.tmp-<version>}, sets the manifest's version,
     * applies {@code editManifest} to its text and renames the folder to {@code <version>}.
     */
    static Path copyVersion(
            Path source, Path exportDir, long version, UnaryOperator<String> editManifest)
            throws IOException {
        Path temporary = exportDir.resolve(".tmp-" + version);
        try (Stream<Path> paths = Files.walk(source)) {
            for (Path path : (Iterable<Path>) paths::iterator) {
                Path target = temporary.resolve(source.relativize(path).toString());
                if (Files.isDirectory(path)) {
                    Files.createDirectories(target);
                } else {
                    Files.copy(path, target, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
        editManifest(
                temporary,
                text -> editManifest.apply(text.replaceFirst("\"version\": [0-9]+", "\"version\": " + version)));
        Path target = exportDir.resolve(Long.toString(version));
        Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
        return target;
    }

    static void editManifest(Path versionDir, UnaryOperator<String> edit) throws IOException {
        Path manifest = versionDir.resolve(ModelSpec.MANIFEST);
        Files.writeString(
                manifest,
                edit.apply(Files.readString(manifest, StandardCharsets.UTF_8)),
                StandardCharsets.UTF_8);
    }
}
