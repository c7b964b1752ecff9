import json
import subprocess
import sys

import pytest

from pyscoring import manifest


def make_manifest(version=1):
    return {
        "format_version": 1,
        "model_name": "census_wide_deep",
        "version": version,
        "created_at": "2026-01-01T00:00:00Z",
        "tensorflow_version": "2.18.0",
        "signature": {"key": "serving_default", "inputs": [], "outputs": []},
        "feature_mapping": {},
        "variables": {"bytes": 1, "partitioned": False, "ps_shards": 1,
                      "partitioned_variables": []},
        "training": {"global_step": 1, "workers": 1, "ps": 0, "metrics": {}},
    }


def add_version(export_dir, version, with_manifest=True):
    folder = export_dir / str(version)
    folder.mkdir(parents=True)
    if with_manifest:
        manifest.write_manifest(folder, make_manifest(version))
    return folder


def test_module_imports_no_tensorflow():
    code = (
        "import sys, pyscoring.manifest; "
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_export_dir_has_no_versions(tmp_path):
    missing = tmp_path / "missing"
    assert manifest.version_folders(missing) == {}
    assert manifest.latest_version(missing) is None
    assert manifest.next_version(missing) == 1


def test_next_version_after_largest_folder(tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2)
    add_version(tmp_path, 10)
    assert manifest.next_version(tmp_path) == 11
    assert manifest.list_versions(tmp_path) == [1, 2, 10]
    assert manifest.latest_version(tmp_path) == 10


def test_folder_without_manifest_counts_for_numbering_only(tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2, with_manifest=False)
    assert manifest.next_version(tmp_path) == 3
    assert manifest.latest_version(tmp_path) == 1


def test_temp_and_other_entries_are_not_versions(tmp_path):
    add_version(tmp_path, 1)
    (tmp_path / ".tmp-2-abcd1234").mkdir()
    manifest.write_manifest(tmp_path / ".tmp-2-abcd1234", make_manifest(2))
    (tmp_path / "007").mkdir()
    (tmp_path / "latest").mkdir()
    (tmp_path / "5").write_text("a file, not a folder")

    assert sorted(manifest.version_folders(tmp_path)) == [1]
    assert manifest.latest_version(tmp_path) == 1
    assert manifest.next_version(tmp_path) == 2


def test_read_manifest_round_trip(tmp_path):
    folder = add_version(tmp_path, 3)
    assert manifest.read_manifest(folder) == make_manifest(3)


def test_write_manifest_never_overwrites(tmp_path):
    folder = add_version(tmp_path, 1)
    with pytest.raises(FileExistsError):
        manifest.write_manifest(folder, make_manifest(1))


def test_read_manifest_missing_file(tmp_path):
    folder = add_version(tmp_path, 1, with_manifest=False)
    with pytest.raises(manifest.ManifestError, match="not a complete export version"):
        manifest.read_manifest(folder)


def test_read_manifest_invalid_json(tmp_path):
    folder = add_version(tmp_path, 1, with_manifest=False)
    (folder / manifest.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(manifest.ManifestError, match="not valid JSON"):
        manifest.read_manifest(folder)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda m: m.update(format_version=2), "format_version is 2"),
        (lambda m: m.pop("signature"), "required field signature is missing"),
        (lambda m: m["variables"].pop("bytes"), "required field variables.bytes is missing"),
        (lambda m: m["training"].pop("metrics"), "required field training.metrics is missing"),
        (lambda m: m.update(version=4), "the folder is version 1"),
        (lambda m: m.update(variables=[]), "variables must be a JSON object"),
    ],
)
def test_read_manifest_rejects_invalid(tmp_path, change, fragment):
    folder = add_version(tmp_path, 1, with_manifest=False)
    content = make_manifest(1)
    change(content)
    (folder / manifest.MANIFEST_FILE).write_text(json.dumps(content))
    with pytest.raises(manifest.ManifestError, match=fragment):
        manifest.read_manifest(folder)
