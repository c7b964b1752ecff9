"""`pyscoring check`: both TensorFlow runtimes on one model version, in separate processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_MODELS = REPO_ROOT / "jvm" / "src" / "test" / "resources" / "models"
CHECK_TIMEOUT_S = 300


def _check(model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyscoring.cli", "check", str(model_dir), *extra],
        capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, cwd=REPO_ROOT,
    )


def test_check_passes_on_census_export(census_export):
    completed = _check(census_export.export_dir, "--input", str(census_export.test_path),
                       "--rows", "200")
    assert completed.returncode == 0, completed.stdout + completed.stderr[-2000:]
    assert "missing in TensorFlow Java: none" in completed.stdout
    assert "sample rows: 200" in completed.stdout
    assert "output probability: largest difference" in completed.stdout
    assert "check passed" in completed.stdout


def test_check_names_missing_op():
    completed = _check(TEST_MODELS / "missing_op")
    assert completed.returncode == 1, completed.stdout + completed.stderr[-2000:]
    assert "missing in TensorFlow Java: PyscoringTestMissingOp" in completed.stdout
    assert "check failed" in completed.stdout
    assert "Python TensorFlow failed: NotFoundError" in completed.stdout


def test_check_of_missing_directory_fails(tmp_path):
    completed = _check(tmp_path / "nothing")
    assert completed.returncode == 2
    assert f"{tmp_path / 'nothing'} does not exist" in completed.stderr
