"""Export folder layout and the manifest `pyscoring.json`, with the stdlib only.

An export folder EXPORT_DIR contains one folder per model version, named by
the version number (1, 2, ...), and temporary folders `.tmp-<N>-<random>`
of exports in progress. The exporter renames a temporary folder to `<N>`
only after `pyscoring.json` is written, so a version folder with a manifest
is complete. Deploy processes must never import Python TensorFlow, so this
module imports nothing outside the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_FILE = "pyscoring.json"
FORMAT_VERSION = 1
TEMP_PREFIX = ".tmp-"

# Version folders are positive integers without leading zeros, so the folder
# name and the manifest's "version" have one spelling.
_VERSION_NAME = re.compile(r"[1-9][0-9]*")

_REQUIRED_KEYS = {
    "": ("format_version", "model_name", "version", "created_at",
         "tensorflow_version", "signature", "feature_mapping", "variables",
         "training"),
    "signature": ("key", "inputs", "outputs"),
    "variables": ("bytes", "partitioned", "ps_shards", "partitioned_variables"),
    "training": ("global_step", "workers", "ps", "metrics"),
}

# Optional sections, checked when present. "model" records the model module
# reference and its ModelParams as a JSON object. The reference is a dotted
# name, or the absolute path of a .py file at export time. Exports written
# before the section existed lack it.
_OPTIONAL_KEYS = {
    "model": {"module": str, "params": dict},
}


class ManifestError(ValueError):
    """A manifest is missing, is not valid JSON or lacks a required field."""


def version_folders(export_dir: str | os.PathLike[str]) -> dict[int, str]:
    """Map each integer folder of `export_dir` to its path, manifest or not.

    Returns an empty dict when `export_dir` does not exist.
    """
    export_dir = os.fspath(export_dir)
    try:
        entries = list(os.scandir(export_dir))
    except FileNotFoundError:
        return {}
    folders = {}
    for entry in entries:
        if _VERSION_NAME.fullmatch(entry.name) and entry.is_dir():
            folders[int(entry.name)] = entry.path
    return folders


def list_versions(export_dir: str | os.PathLike[str]) -> list[int]:
    """Return the complete versions of `export_dir` (with a manifest), ascending."""
    return sorted(
        version
        for version, path in version_folders(export_dir).items()
        if os.path.isfile(os.path.join(path, MANIFEST_FILE))
    )


def latest_version(export_dir: str | os.PathLike[str]) -> int | None:
    """Return the largest complete version of `export_dir`, or None if there is none."""
    versions = list_versions(export_dir)
    return versions[-1] if versions else None


def next_version(export_dir: str | os.PathLike[str]) -> int:
    """Return 1 + the largest integer folder of `export_dir`, or 1 if there is none.

    Folders without a manifest count too, so a new version never reuses
    their number.
    """
    return max(version_folders(export_dir), default=0) + 1


def version_path(export_dir: str | os.PathLike[str], version: int) -> str:
    return os.path.join(os.fspath(export_dir), str(version))


def read_manifest(version_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check `<version_dir>/pyscoring.json`.

    Raises ManifestError when the file is missing or not JSON, when
    `format_version` is not FORMAT_VERSION, when a required field is
    missing, or when the folder name is a version number other than the
    manifest's `version`.
    """
    version_dir = os.fspath(version_dir)
    path = os.path.join(version_dir, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except FileNotFoundError:
        raise ManifestError(
            f"{path} not found; {version_dir} is not a complete export version"
        ) from None
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path} is not valid JSON: {error}") from None

    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{path}: format_version is {manifest.get('format_version')!r}, but this "
            f"pyscoring reads format_version {FORMAT_VERSION}"
        )
    for section, keys in _REQUIRED_KEYS.items():
        fields = manifest[section] if section else manifest
        if not isinstance(fields, dict):
            raise ManifestError(f"{path}: {section} must be a JSON object")
        for key in keys:
            if key not in fields:
                name = f"{section}.{key}" if section else key
                raise ManifestError(f"{path}: required field {name} is missing")
    _check_optional_sections(path, manifest)

    folder_name = os.path.basename(os.path.normpath(version_dir))
    if _VERSION_NAME.fullmatch(folder_name) and int(folder_name) != manifest["version"]:
        raise ManifestError(
            f"{path}: version is {manifest['version']!r}, but the folder is "
            f"version {folder_name}"
        )
    return manifest


def _check_optional_sections(path: str, manifest: dict[str, Any]) -> None:
    for section, types in _OPTIONAL_KEYS.items():
        if section not in manifest:
            continue
        fields = manifest[section]
        if not isinstance(fields, dict):
            raise ManifestError(f"{path}: {section} must be a JSON object")
        for key, expected in types.items():
            if not isinstance(fields.get(key), expected):
                kind = "string" if expected is str else "JSON object"
                raise ManifestError(
                    f"{path}: {section}.{key} must be a {kind}, got {fields.get(key)!r}")


def model_reference(manifest: dict[str, Any]) -> tuple[str, str] | None:
    """Return the model module reference and its params JSON, or None for older exports.

    `pyscoring.export.load_manifest_model` loads the module and parses the
    params; this function only reads the manifest, without TensorFlow.
    """
    section = manifest.get("model")
    if section is None:
        return None
    return section["module"], json.dumps(section["params"], sort_keys=True)


def write_manifest(directory: str | os.PathLike[str], manifest: dict[str, Any]) -> str:
    """Write `manifest` to `<directory>/pyscoring.json`, fsync it and return the path."""
    path = os.path.join(os.fspath(directory), MANIFEST_FILE)
    with open(path, "x", encoding="utf-8") as file:
        json.dump(manifest, file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    return path
