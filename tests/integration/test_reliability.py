"""Reliability of the deployed job: bad input, rows TensorFlow rejects, failures, model errors.

Every job runs in this process's Flink mini cluster (one JVM for all of
them), on small inputs: the cached census export, or the committed tiny
model, whose graph rejects a negative `count`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyscoring import deploy
from pyscoring.config import Config
from tests.integration.jvm_process import counter, scorer_loads, scrape_jvm

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_MODELS = REPO_ROOT / "jvm" / "src" / "test" / "resources" / "models"
TINY_COLUMNS = "x FLOAT, count BIGINT, label STRING"
JOB_TIMEOUT_S = 300

GOOD = ("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
        "White, Male, 2174, 0, 40, United-States, <=50K")
HEADER = ("age, workclass, fnlwgt, education, education-num, marital-status, occupation, "
          "relationship, race, sex, capital-gain, capital-loss, hours-per-week, "
          "native-country, income")


def _with_field(index: int, value: str) -> str:
    fields = GOOD.split(", ")
    fields[index] = value
    return ", ".join(fields)


# Each case is one line of the input: its bytes with terminator, and the
# reason code of its dead letter, or None when the row is scored.
BAD_INPUT_CASES = [
    ("empty line", b"\n", "EMPTY_LINE"),
    ("missing fields", b"39, State-gov, 77516\n", "FIELD_COUNT"),
    ("extra field", (GOOD + ", extra\n").encode(), "FIELD_COUNT"),
    ("non-numeric value", (_with_field(0, "abc") + "\n").encode(), "NOT_A_NUMBER"),
    ("NaN", (_with_field(0, "NaN") + "\n").encode(), "NOT_FINITE"),
    ("infinity", (_with_field(10, "-Infinity") + "\n").encode(), "NOT_FINITE"),
    ("int64 overflow", (_with_field(2, "9223372036854775808") + "\n").encode(), "OUT_OF_RANGE"),
    ("1 MB field", (_with_field(1, "x" * (1 << 20)) + "\n").encode(), "FIELD_TOO_LONG"),
    ("invalid UTF-8", GOOD.encode().replace(b"State-gov", b"State\xff\xfegov") + b"\n",
     "INVALID_UTF8"),
    ("CRLF line", (GOOD + "\r\n").encode(), None),
    ("LF line after CRLF", (GOOD + "\n").encode(), None),
    ("header line", (HEADER + "\r\n").encode(), "HEADER_LINE"),
    ("? in numeric column", (_with_field(0, "?") + "\n").encode(), "MISSING_VALUE"),
    ("? in categorical column", (_with_field(1, "?") + "\n").encode(), None),
]
GOOD_LINES = 200
COMMENT_LINE = b"|1x3 Cross validator\n"


@dataclasses.dataclass
class JobOutput:
    keys_in: list[str]
    scores: list[dict]
    dead_letters: list[dict]
    metrics_before: dict
    metrics_after: dict


def _injected_failures() -> int:
    from pyflink import java_gateway

    if java_gateway._gateway is None:
        return 0
    return java_gateway.get_gateway().jvm.io.pyscoring.scoring.PredictFunction.injectedFailureCount()


def _run(request: deploy.DeployRequest) -> deploy.DeployedJob:
    job = deploy.deploy(request)
    try:
        assert job.wait(timeout_s=JOB_TIMEOUT_S), f"job {job.job_id} did not finish in time"
    finally:
        job.targets_writer.stop()
    return job


def _keys(path: Path) -> list[str]:
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [f"{path.name}:{number}" for number in range(1, len(lines) + 1)]


def _copy_version(source: Path, export_dir: Path, version: int, model_name: str | None = None,
                  edit=None) -> Path:
    """Write `source` as version `version` of `export_dir`, manifest last, by rename."""
    temporary = export_dir / f".tmp-{version}-test"
    shutil.copytree(source, temporary)
    manifest_path = temporary / "pyscoring.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = version
    if model_name:
        manifest["model_name"] = model_name
    if edit:
        edit(temporary, manifest)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    target = export_dir / str(version)
    os.rename(temporary, target)
    return target


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_input_run(census_export, tmp_path_factory) -> JobOutput:
    input_dir = tmp_path_factory.mktemp("bad-input")
    good_lines = census_export.test_path.read_bytes().splitlines(keepends=True)[:GOOD_LINES]
    path = input_dir / "bad.txt"
    path.write_bytes(COMMENT_LINE + b"".join(line for _, line, _ in BAD_INPUT_CASES)
                     + b"".join(good_lines))
    output_dir = tmp_path_factory.mktemp("bad-output")
    before = scrape_jvm()
    _run(deploy.DeployRequest(
        model_dir=census_export.export_dir, output_dir=output_dir, input_path=path,
        config=Config({"deploy.checkpoint-interval-ms": 500}),
    ))
    return JobOutput(
        keys_in=_keys(path),
        scores=deploy.read_json_lines(output_dir / "scores"),
        dead_letters=deploy.read_json_lines(output_dir / "dead-letters"),
        metrics_before=before,
        metrics_after=scrape_jvm(),
    )


@pytest.mark.parametrize(
    ("line_number", "case", "reason_code"),
    [(number, case, code) for number, (case, _, code) in enumerate(BAD_INPUT_CASES, start=2)],
    ids=[case for case, _, _ in BAD_INPUT_CASES],
)
def test_bad_input_reason_code(bad_input_run, line_number, case, reason_code):
    key = f"bad.txt:{line_number}"
    dead = {row["key"]: row for row in bad_input_run.dead_letters}
    scored = {row["key"] for row in bad_input_run.scores}
    if reason_code is None:
        assert key in scored, f"{case} was not scored: {dead.get(key)}"
        assert key not in dead
    else:
        assert key not in scored, f"{case} was scored"
        assert dead[key]["reason_code"] == reason_code, dead[key]["reason"]
        assert dead[key]["source"] == "bad.txt"
        assert dead[key]["reason"]


def test_rows_in_equal_scored_plus_dead_plus_comments(bad_input_run):
    # The census format skips lines that start with "|": here line 1 only.
    comment_keys = {"bad.txt:1"}
    scored = [row["key"] for row in bad_input_run.scores]
    dead = [row["key"] for row in bad_input_run.dead_letters]
    assert len(scored) == len(set(scored)), "a row was scored twice"
    assert len(dead) == len(set(dead)), "a row was dead-lettered twice"
    assert not set(scored) & set(dead)
    assert len(bad_input_run.keys_in) == 1 + len(BAD_INPUT_CASES) + GOOD_LINES
    assert len(bad_input_run.keys_in) == len(scored) + len(dead) + len(comment_keys)
    assert set(bad_input_run.keys_in) == set(scored) | set(dead) | comment_keys


def test_dead_letter_raw_is_cut_and_escaped(bad_input_run):
    dead = {row["key"]: row for row in bad_input_run.dead_letters}
    cases = {case: f"bad.txt:{number}" for number, (case, _, _) in
             enumerate(BAD_INPUT_CASES, start=2)}
    long_row = dead[cases["1 MB field"]]
    assert len(long_row["raw"]) == deploy.RAW_MAX_CHARS
    assert f"raw holds the first {deploy.RAW_MAX_CHARS} of" in long_row["reason"]
    invalid = dead[cases["invalid UTF-8"]]
    assert invalid["raw"] == GOOD.replace("State-gov", "State\\xff\\xfegov")
    assert "byte offset" in invalid["reason"]
    assert dead[cases["missing fields"]]["raw"] == "39, State-gov, 77516"


def test_dead_letter_metric_counts_reason_codes(bad_input_run, census_export):
    expected: dict[str, int] = {}
    for row in bad_input_run.dead_letters:
        expected[row["reason_code"]] = expected.get(row["reason_code"], 0) + 1
    model = census_export.manifest["model_name"]
    for code, count in expected.items():
        labels = {"model": model, "version": "", "path": "jvm", "reason_code": code}
        before = counter(bad_input_run.metrics_before, "pyscoring_dead_letters", labels)
        after = counter(bad_input_run.metrics_after, "pyscoring_dead_letters", labels)
        assert after - before == count, code


# ---------------------------------------------------------------- TensorFlow errors


def test_row_tensorflow_rejects_is_dead_letter(tmp_path):
    lines = [f"{index}.5, {index}, a" for index in range(40)]
    lines[17] = "1.0, -5, b"  # the tiny model's graph asserts count >= 0
    lines[30] = "1e39, 3, a"  # above the FLOAT range
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(lines) + "\n")
    failures_before = _injected_failures()
    _run(deploy.DeployRequest(
        model_dir=TEST_MODELS / "tiny", output_dir=tmp_path / "out", input_path=path,
        input_format=deploy.InputFormat.parse(TINY_COLUMNS),
        config=Config({"scoring.max-batch-size": 8, "scoring.max-batch-delay-ms": 50,
                       "deploy.restart-attempts": 0, "deploy.checkpoint-interval-ms": 200}),
    ))
    scores = deploy.read_json_lines(tmp_path / "out" / "scores")
    dead = {row["key"]: row for row in deploy.read_json_lines(tmp_path / "out" / "dead-letters")}
    assert set(dead) == {"tiny.txt:18", "tiny.txt:31"}
    assert dead["tiny.txt:18"]["reason_code"] == "TF_ERROR"
    assert "count must not be negative" in dead["tiny.txt:18"]["reason"]
    assert dead["tiny.txt:18"]["raw"] == "1.0, -5, b"
    assert dead["tiny.txt:31"]["reason_code"] == "OUT_OF_RANGE"
    assert len(scores) == 38
    by_key = {row["key"]: row for row in scores}
    assert by_key["tiny.txt:20"]["y"] == pytest.approx(2 * 19.5 + 19 + 1)
    assert _injected_failures() == failures_before


# ---------------------------------------------------------------- failures


EXACTLY_ONCE_ROWS = 3000


def run_with_injected_failures(census_export, tmp_path: Path, name: str) -> tuple[list, list, int]:
    """Score the first rows of adult.test while the scorer fails 3 times; return the output."""
    path = tmp_path / f"{name}.test"
    path.write_bytes(b"".join(census_export.test_path.read_bytes()
                              .splitlines(keepends=True)[:EXACTLY_ONCE_ROWS]))
    failures_before = _injected_failures()
    _run(deploy.DeployRequest(
        model_dir=census_export.export_dir, output_dir=tmp_path / f"{name}-out", input_path=path,
        config=Config({
            "source.rows-per-second": 1500,
            "deploy.checkpoint-interval-ms": 200,
            "deploy.restart-attempts": 0,
            "scoring.test.fail-at-rows": "700;700;700",
        }),
    ))
    scores = deploy.read_json_lines(tmp_path / f"{name}-out" / "scores")
    dead = deploy.read_json_lines(tmp_path / f"{name}-out" / "dead-letters")
    return scores, dead, _injected_failures() - failures_before


def test_injected_failures_give_exactly_once(census_export, tmp_path):
    loads_before = scorer_loads(census_export.version_dir)
    scores, dead, failures = run_with_injected_failures(census_export, tmp_path, "failures")
    keys = [row["key"] for row in scores] + [row["key"] for row in dead]
    expected = {f"failures.test:{number}" for number in range(1, EXACTLY_ONCE_ROWS + 1)}
    assert failures == 3
    # Every attempt reopened the model in this process's one Flink JVM, whose
    # TensorFlow native library stayed loaded across the restarts.
    assert scorer_loads(census_export.version_dir) - loads_before >= 1 + failures
    assert not dead
    assert len(keys) == len(set(keys)), "a row was written twice"
    assert set(keys) == expected


@pytest.mark.slow
def test_same_job_twice_with_failovers_in_one_jvm(census_export, tmp_path):
    # Both jobs and all their restarts run in this process's one Flink JVM,
    # which loads TensorFlow's native library once.
    for name in ("first", "second"):
        scores, dead, failures = run_with_injected_failures(census_export, tmp_path, name)
        keys = [row["key"] for row in scores]
        assert failures == 3, name
        assert not dead, name
        assert len(keys) == len(set(keys)) == EXACTLY_ONCE_ROWS, name


# ---------------------------------------------------------------- pre-flight


def _deploy_error(tmp_path: Path, model_dir: Path, columns: str = TINY_COLUMNS) -> str:
    path = tmp_path / "in.txt"
    path.write_text("1.0, 1, a\n")
    with pytest.raises(deploy.DeployError) as error:
        deploy.deploy(deploy.DeployRequest(
            model_dir=model_dir, output_dir=tmp_path / "out", input_path=path,
            input_format=deploy.InputFormat.parse(columns),
        ))
    return str(error.value)


def test_preflight_missing_directory(tmp_path):
    message = _deploy_error(tmp_path, tmp_path / "no-such-export")
    assert str(tmp_path / "no-such-export") in message
    assert "does not exist" in message
    assert "EXPORT_DIR" in message


def test_preflight_corrupt_saved_model(tmp_path):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    version_dir = _copy_version(TEST_MODELS / "tiny" / "1", export_dir, 1)
    (version_dir / "saved_model.pb").write_bytes(b"\x0a\xff\x01 not a protobuf")
    message = _deploy_error(tmp_path, export_dir)
    assert f"{version_dir.resolve()}/saved_model.pb is not a valid SavedModel" in message
    assert "re-export the model" in message


def test_preflight_signature_mismatch_with_columns(tmp_path):
    message = _deploy_error(tmp_path, TEST_MODELS / "tiny", "x FLOAT, count STRING, label STRING")
    assert "'count' is STRING but the model input 'count' is int64" in message
    assert "declare the column as BIGINT" in message


def test_preflight_manifest_disagrees_with_saved_model(tmp_path):
    export_dir = tmp_path / "export"
    export_dir.mkdir()

    def rename_output(folder, manifest):
        manifest["signature"]["outputs"][0]["name"] = "z"

    _copy_version(TEST_MODELS / "tiny" / "1", export_dir, 1, edit=rename_output)
    message = _deploy_error(tmp_path, export_dir)
    assert "lists the output 'z'" in message
    assert "re-export the model" in message


def test_preflight_symlink_outside_export(tmp_path):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    version_dir = _copy_version(TEST_MODELS / "tiny" / "1", export_dir, 1)
    outside = tmp_path / "outside-variables"
    shutil.move(version_dir / "variables", outside)
    (version_dir / "variables").symlink_to(outside)
    message = _deploy_error(tmp_path, export_dir)
    assert "outside the version folder" in message


def test_preflight_missing_op_fails_cli(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("1.0, 1, a\n")
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "pyscoring.cli", "deploy", "--model",
         str(TEST_MODELS / "missing_op"), "--input", str(path), "--output",
         str(tmp_path / "out"), "--columns", TINY_COLUMNS],
        capture_output=True, text=True, timeout=JOB_TIMEOUT_S, cwd=REPO_ROOT,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "PyscoringTestMissingOp" in completed.stderr
    assert "does not register" in completed.stderr
    assert "export the model without these ops" in completed.stderr
    assert not (tmp_path / "out" / "scores").exists()
    assert time.monotonic() - started < 120


# ---------------------------------------------------------------- hot swap


HOT_SWAP_ROWS = 6000
HOT_SWAP_MODEL = "census_hot_swap"


@pytest.fixture(scope="module")
def hot_swap_run(census_export, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("hot-swap-export")
    _copy_version(census_export.version_dir, export_dir, 1, HOT_SWAP_MODEL)
    input_dir = tmp_path_factory.mktemp("hot-swap-input")
    path = input_dir / "swap.test"
    path.write_bytes(b"".join(census_export.test_path.read_bytes()
                              .splitlines(keepends=True)[:HOT_SWAP_ROWS]))
    output_dir = tmp_path_factory.mktemp("hot-swap-output")
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=export_dir, output_dir=output_dir, input_path=path,
        config=Config({
            "source.rows-per-second": 1000,
            "deploy.checkpoint-interval-ms": 500,
            "scoring.watch-interval-ms": 100,
        }),
    ))
    labels = {"model": HOT_SWAP_MODEL, "path": "jvm"}
    rejected_labels = {"model": HOT_SWAP_MODEL, "version": "3", "path": "jvm",
                       "reason_code": "LOAD_FAILED"}
    events = []
    try:
        def wait_until(condition, what):
            deadline = time.monotonic() + 60
            while not condition(scrape_jvm()):
                assert not job.done(), f"the job ended before {what}"
                assert time.monotonic() < deadline, f"timed out waiting until {what}"
                time.sleep(0.1)

        wait_until(lambda f: counter(f, "pyscoring_predictions", {**labels, "version": "1"}) > 0,
                   "version 1 scored rows")
        _copy_version(census_export.version_dir, export_dir, 2, HOT_SWAP_MODEL)
        events.append("wrote version 2")
        wait_until(lambda f: counter(f, "pyscoring_predictions", {**labels, "version": "2"}) > 0,
                   "version 2 scored rows")

        def corrupt(folder, manifest):
            (folder / "saved_model.pb").write_bytes(b"\x0a\xff\x01 not a protobuf")

        rejected_before = counter(scrape_jvm(), "pyscoring_model_versions_rejected",
                                   rejected_labels)
        _copy_version(census_export.version_dir, export_dir, 3, HOT_SWAP_MODEL, edit=corrupt)
        events.append("wrote broken version 3")
        wait_until(lambda f: counter(f, "pyscoring_model_versions_rejected", rejected_labels)
                   > rejected_before, "version 3 was rejected")
        events.append("version 3 rejected")
        listening = _listening_addresses()
        assert job.wait(timeout_s=JOB_TIMEOUT_S), "the hot-swap job did not finish in time"
    finally:
        job.targets_writer.stop()
    return {
        "scores": deploy.read_json_lines(output_dir / "scores"),
        "dead_letters": deploy.read_json_lines(output_dir / "dead-letters"),
        "events": events,
        "listening": listening,
    }


def _listening_addresses() -> set[str]:
    """Return the addresses that this process's Flink JVM listens on (TCP, from /proc)."""
    from pyflink import java_gateway

    pid = java_gateway.get_gateway().jvm.java.lang.ProcessHandle.current().pid()
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:  # 0A is LISTEN
                    addresses.add(local.split(":")[0])
    return addresses


def test_hot_swap_switches_version_without_loss(hot_swap_run):
    scores = hot_swap_run["scores"]
    keys = [row["key"] for row in scores]
    assert not hot_swap_run["dead_letters"]
    assert len(keys) == len(set(keys)), "a row was scored twice"
    assert set(keys) == {f"swap.test:{number}" for number in range(1, HOT_SWAP_ROWS + 1)}
    by_line = sorted(scores, key=lambda row: int(row["key"].split(":")[1]))
    versions = [row["model_version"] for row in by_line]
    assert set(versions) == {1, 2}
    first_v2 = versions.index(2)
    assert all(version == 2 for version in versions[first_v2:]), "version 1 after the swap"


def test_broken_version_rejected_while_old_serves(hot_swap_run):
    assert hot_swap_run["events"][-1] == "version 3 rejected"
    versions = {row["model_version"] for row in hot_swap_run["scores"]}
    assert 3 not in versions
    last = max(hot_swap_run["scores"], key=lambda row: int(row["key"].split(":")[1]))
    assert last["model_version"] == 2


def test_job_listens_on_loopback_only(hot_swap_run):
    # /proc/net/tcp prints IPv4 addresses as little-endian hex: 0100007F is
    # 127.0.0.1; in tcp6, ::ffff:127.0.0.1 and ::1 are the loopback forms.
    loopback = {"0100007F", "0000000000000000FFFF00000100007F",
                "00000000000000000000000001000000"}
    assert hot_swap_run["listening"], "no listening socket found"
    assert hot_swap_run["listening"] <= loopback, hot_swap_run["listening"]
