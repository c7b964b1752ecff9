"""`pyscoring check EXPORT_DIR`: score one model version with both TensorFlow runtimes.

The check runs two child processes at once. One hosts a JVM with JPype and
loads the version through TensorFlow Java (io.pyscoring.scoring.ModelCheck):
it lists the graph's ops that TensorFlow Java's runtime does not register
(TensorFlow.registeredOpList()) and scores the sample rows. That process never
imports Python TensorFlow, because two TensorFlow runtimes must not share a
process. The other process scores the same rows with Python TensorFlow. The
check passes when the Java side reports no missing op and no error, and every
output agrees within the tolerances.

This module imports neither TensorFlow nor JPype itself.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyscoring import census, manifest
from pyscoring._internal import flink_env

LOG = logging.getLogger(__name__)

DEFAULT_ROWS = 64
# Both runtimes are TensorFlow 2.18.0 on the same CPU, so outputs agree to
# float32 rounding; these bounds leave room for a different kernel order.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-5
CHILD_TIMEOUT_S = 300

# Strings for synthetic STRING inputs: plain tokens, the data set's missing
# marker and an empty string.
_SAMPLE_STRINGS = ("a", "b", "Private", "United-States", "?", "")

_JAVA_SCRIPT = """
import glob, json, sys
import jpype
arguments = json.loads(sys.stdin.read())
jpype.startJVM(classpath=sorted(glob.glob(arguments["lib_dir"] + "/*.jar")), convertStrings=True)
model_check = jpype.JClass("io.pyscoring.scoring.ModelCheck")
report = json.loads(str(model_check.report(arguments["version_dir"], json.dumps(arguments["rows"]))))
report["python_tensorflow_imported"] = "tensorflow" in sys.modules
print(json.dumps(report))
"""

_PYTHON_SCRIPT = """
import json, sys
import numpy as np
arguments = json.loads(sys.stdin.read())
report = {}
try:
    import tensorflow as tf
    from pyscoring.export import score_with_python_tf
    report["tensorflow_version"] = tf.__version__
    features = {name: np.asarray(values, dtype=arguments["dtypes"][name])
                for name, values in arguments["rows"].items()}
    outputs = score_with_python_tf(arguments["version_dir"], features)
    report["outputs"] = {name: np.asarray(value).tolist() for name, value in outputs.items()}
except Exception as error:
    report["error"] = f"{type(error).__name__}: {error}"
print(json.dumps(report))
"""

_NUMPY_DTYPES = {
    "float32": "float32",
    "float64": "float64",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
    "string": "object",
}


class CheckError(ValueError):
    """The check could not run: no model version, or a child process failed."""


@dataclasses.dataclass
class CheckResult:
    """Outcome of `check`: each problem found, and the reports of both runtimes."""

    version_dir: Path
    rows: int
    problems: list[str]
    java: dict[str, Any]
    python: dict[str, Any]
    max_difference: dict[str, float]

    @property
    def passed(self) -> bool:
        return not self.problems


def sample_rows(model: dict, rows: int, seed: int = 0) -> dict[str, list]:
    """Return `rows` synthetic values per signature input, deterministic for `seed`.

    Numbers are drawn from [0, 10) (floats) and [0, 100] (integers), so a
    model that rejects negative values still scores every row.
    """
    generator = random.Random(seed)
    values: dict[str, list] = {}
    for tensor in model["signature"]["inputs"]:
        dtype = tensor["dtype"]
        if len(tensor["shape"]) != 1:
            raise CheckError(
                f"input {tensor['name']!r} has shape {tensor['shape']}; the check scores "
                "inputs of shape [-1] only"
            )
        if dtype in ("float32", "float64"):
            column = [round(generator.uniform(0, 10), 3) for _ in range(rows)]
        elif dtype in ("int32", "int64"):
            column = [generator.randint(0, 100) for _ in range(rows)]
        elif dtype == "bool":
            column = [generator.random() < 0.5 for _ in range(rows)]
        else:
            column = [generator.choice(_SAMPLE_STRINGS) for _ in range(rows)]
        values[tensor["name"]] = column
    return values


def census_rows(path: Path, model: dict, rows: int) -> dict[str, list]:
    """Return the first `rows` rows of a census file for the model's inputs."""
    data = census.load(path)
    values = {}
    for tensor in model["signature"]["inputs"]:
        if tensor["name"] not in data.features:
            raise CheckError(
                f"the model input {tensor['name']!r} is not a census column, so --input "
                f"{path} cannot feed it; leave out --input to check with synthetic rows"
            )
        values[tensor["name"]] = data.features[tensor["name"]][:rows].tolist()
    return values


def _run_child(script: str, arguments: dict, what: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(arguments),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise CheckError(
            f"{what} exited with code {completed.returncode}; its output ends with:\n"
            f"{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def _resolve(model_dir: Path) -> Path:
    model_dir = Path(model_dir)
    if (model_dir / manifest.MANIFEST_FILE).is_file():
        return model_dir
    version = manifest.latest_version(model_dir)
    if version is None:
        if not model_dir.is_dir():
            raise CheckError(f"model directory {model_dir} does not exist; pass an EXPORT_DIR")
        raise CheckError(
            f"no complete model version in {model_dir}: expected a folder <N>/ holding "
            f"{manifest.MANIFEST_FILE}"
        )
    return Path(manifest.version_path(model_dir, version))


def check(model_dir: Path, rows: int = DEFAULT_ROWS, input_path: Path | None = None,
          seed: int = 0) -> CheckResult:
    """Score sample rows of the newest version in `model_dir` with both runtimes and compare.

    `model_dir` is an export directory or one version folder. `input_path`
    is a census-format file whose first `rows` rows replace the synthetic
    rows. Raises CheckError when the check itself cannot run.
    """
    version_dir = _resolve(model_dir).resolve()
    model = manifest.read_manifest(version_dir)
    values = census_rows(input_path, model, rows) if input_path else sample_rows(model, rows, seed)
    dtypes = {tensor["name"]: _NUMPY_DTYPES[tensor["dtype"]]
              for tensor in model["signature"]["inputs"]}
    lib_dir = flink_env.flink_lib_dir()
    if not list(lib_dir.glob("pyscoring-jvm-*.jar")):
        raise CheckError(f"no pyscoring-jvm jar in {lib_dir}; run `make install`")

    LOG.info("Checking %s with %d rows in TensorFlow Java and Python TensorFlow", version_dir, rows)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        java_future = pool.submit(_run_child, _JAVA_SCRIPT, {
            "lib_dir": str(lib_dir), "version_dir": str(version_dir), "rows": values,
        }, "the TensorFlow Java process")
        python_future = pool.submit(_run_child, _PYTHON_SCRIPT, {
            "version_dir": str(version_dir), "rows": values, "dtypes": dtypes,
        }, "the Python TensorFlow process")
        java, python = java_future.result(), python_future.result()
    problems, differences = compare(model, java, python)
    return CheckResult(version_dir, rows, problems, java, python, differences)


def compare(model: dict, java: dict, python: dict) -> tuple[list[str], dict[str, float]]:
    """Return the problems found in both reports and the largest difference per output."""
    problems = []
    differences: dict[str, float] = {}
    if java.get("python_tensorflow_imported"):
        problems.append("the TensorFlow Java process imported Python TensorFlow")
    if java.get("missing_ops"):
        problems.append(
            f"the graph uses ops that TensorFlow Java {java.get('tensorflow_version')} does not "
            f"register: {', '.join(java['missing_ops'])}; export the model without them"
        )
    if "error" in java and not java.get("missing_ops"):
        problems.append(f"TensorFlow Java failed: {java['error']}")
    if "error" in python:
        problems.append(f"Python TensorFlow failed: {python['error']}")
    if problems:
        return problems, differences

    failed_rows = [index for index, error in enumerate(java.get("errors", [])) if error]
    if failed_rows:
        first = failed_rows[0]
        problems.append(
            f"TensorFlow Java rejected {len(failed_rows)} sample rows; row {first}: "
            f"{java['errors'][first]}"
        )
    for tensor in model["signature"]["outputs"]:
        name = tensor["name"]
        java_values = _flatten(java["outputs"].get(name, []))
        python_values = _flatten(python["outputs"].get(name, []))
        if len(java_values) != len(python_values):
            problems.append(
                f"output {name!r}: TensorFlow Java returned {len(java_values)} values, Python "
                f"TensorFlow {len(python_values)}"
            )
            continue
        worst = 0.0
        for index, (left, right) in enumerate(zip(java_values, python_values)):
            if isinstance(left, (int, float)) and isinstance(right, (int, float)):
                difference = abs(left - right)
                worst = max(worst, difference)
                if not math.isclose(left, right, rel_tol=RELATIVE_TOLERANCE,
                                    abs_tol=ABSOLUTE_TOLERANCE):
                    problems.append(
                        f"output {name!r} value {index}: TensorFlow Java {left!r}, Python "
                        f"TensorFlow {right!r}"
                    )
                    break
            elif str(left) != str(right):
                problems.append(
                    f"output {name!r} value {index}: TensorFlow Java {left!r}, Python "
                    f"TensorFlow {right!r}"
                )
                break
        differences[name] = worst
    return problems, differences


def _flatten(values: list) -> list:
    flat = []
    for value in values:
        if isinstance(value, list):
            flat.extend(_flatten(value))
        else:
            flat.append(value)
    return flat


def format_result(result: CheckResult) -> str:
    """Return the report that `pyscoring check` prints."""
    lines = [
        f"model version: {result.version_dir}",
        f"TensorFlow Java runtime: {result.java.get('tensorflow_version', 'unknown')}, "
        f"Python TensorFlow: {result.python.get('tensorflow_version', 'unknown')}",
        f"graph ops: {len(result.java.get('ops', []))}, missing in TensorFlow Java: "
        f"{', '.join(result.java.get('missing_ops', [])) or 'none'}",
        f"sample rows: {result.rows}",
    ]
    for name, difference in result.max_difference.items():
        lines.append(f"output {name}: largest difference {difference:.3g}")
    if result.passed:
        lines.append("check passed: both runtimes load the model and agree")
    else:
        lines.append("check failed:")
        lines.extend(f"  - {problem}" for problem in result.problems)
    return "\n".join(lines)
