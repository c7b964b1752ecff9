"""The parts of the Flink-native features that need no Flink: column options, restore paths,
the start-over notice, the REST client against a fake Flink REST endpoint, and the DDL."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from pyscoring import cli, deploy, jobs
from pyscoring.config import Config

OUTPUTS = ["probability", "logit"]


def _format(*names: str) -> deploy.InputFormat:
    return deploy.InputFormat(tuple((name, "BIGINT") for name in names))


def test_pass_through_defaults_to_every_column_but_key():
    columns, outputs = deploy.score_columns(Config(), _format("key", "age", "hours"), OUTPUTS)
    assert columns == ["age", "hours"]
    assert outputs == OUTPUTS


def test_pass_through_list_and_rename():
    config = Config({"deploy.pass-through": "hours, age", "deploy.rename-outputs": "probability=score"})
    columns, outputs = deploy.score_columns(config, _format("age", "hours", "sex"), OUTPUTS)
    assert columns == ["hours", "age"]
    assert outputs == ["score", "logit"]


def test_pass_through_empty_copies_nothing():
    columns, _ = deploy.score_columns(Config({"deploy.pass-through": ""}), _format("age"), OUTPUTS)
    assert columns == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"deploy.pass-through": "age,height"}, "names height, which the input does not have"),
        ({"deploy.rename-outputs": "output_0=score"}, "renames 'output_0', which is not a model output"),
        ({"deploy.rename-outputs": "probability"}, "invalid item 'probability'"),
        ({"deploy.rename-outputs": "probability=logit"}, "two columns named 'logit'"),
        ({"deploy.rename-outputs": "probability=age"}, "two columns named 'age'"),
        ({"deploy.pass-through": "key"}, "names key, which the input does not have"),
    ],
)
def test_column_options_rejected(overrides, message):
    with pytest.raises(deploy.DeployError, match=message):
        deploy.score_columns(Config(overrides), _format("age"), OUTPUTS)


def test_event_time_column_must_be_time_or_millis():
    fmt = deploy.InputFormat((("age", "BIGINT"), ("when", "STRING"), ("at", "TIMESTAMP_LTZ(3)")))
    assert deploy.event_time_column(Config({"deploy.event-time-column": "at"}), fmt) == "at"
    assert deploy.event_time_column(Config(), fmt) is None
    with pytest.raises(deploy.DeployError, match="'when' is STRING"):
        deploy.event_time_column(Config({"deploy.event-time-column": "when"}), fmt)
    with pytest.raises(deploy.DeployError, match="names 'then', which the input does not have"):
        deploy.event_time_column(Config({"deploy.event-time-column": "then"}), fmt)


def test_statements_carry_columns_and_latency(census_export, tmp_path):
    fmt = deploy.InputFormat(deploy.CENSUS_FORMAT.columns + (("event_time", "BIGINT"),))
    config = Config({
        "deploy.pass-through": "age,workclass",
        "deploy.rename-outputs": "probability=score",
        "deploy.event-time-column": "event_time",
    })
    request = deploy.DeployRequest(
        model_dir=census_export.export_dir, output_dir=tmp_path, input_path=census_export.test_path,
        input_format=fmt, config=config,
    )
    ddl, scoring_query, inserts = deploy.build_statements(
        request, census_export.version_dir, census_export.manifest
    )
    scores_table = next(statement for statement in ddl if "TABLE pyscoring_scores" in statement)
    assert (
        "(`key` STRING, `age` BIGINT, `workclass` STRING, `score` FLOAT, `logit` FLOAT, "
        "model_version BIGINT)" in scores_table
    )
    assert "v.`age` AS in_0, v.`workclass` AS in_1, v.`event_time` AS event_time" in scoring_query
    assert "pyscoring_end_to_end_latency(event_time, 'census_wide_deep', model_version)" in inserts[0]


def _write_metadata(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / jobs.METADATA_FILE).write_bytes(b"\0")
    return folder


def test_restore_path_resolution(tmp_path):
    savepoint = _write_metadata(tmp_path / "savepoints" / "savepoint-abc123-0f0f")
    assert jobs.resolve_restore_path(savepoint) == savepoint
    assert jobs.resolve_restore_path(tmp_path / "savepoints") == savepoint
    assert jobs.resolve_restore_path(f"file:{savepoint}") == savepoint

    checkpoints = tmp_path / "checkpoints"
    _write_metadata(checkpoints / "job1" / "chk-3")
    (checkpoints / "job1" / "chk-4").mkdir()  # incomplete: no _metadata yet
    assert jobs.resolve_restore_path(checkpoints) == checkpoints / "job1" / "chk-3"

    with pytest.raises(jobs.JobsError, match="does not exist"):
        jobs.resolve_restore_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(jobs.JobsError, match="no savepoint or retained checkpoint"):
        jobs.resolve_restore_path(tmp_path / "empty")


def test_starting_over_notice(tmp_path):
    output_dir = tmp_path / "out"
    checkpoint_dir = output_dir / "checkpoints"
    assert jobs.starting_over_notice(output_dir, checkpoint_dir) is None

    output_dir.mkdir()
    jobs.write_job_record(output_dir, {"job_id": "a1b2"})
    notice = jobs.starting_over_notice(output_dir, checkpoint_dir)
    assert "starting over without a savepoint" in notice
    assert "(earlier job: a1b2)" in notice
    assert "--from-savepoint" not in notice

    checkpoint = _write_metadata(checkpoint_dir / "a1b2" / "chk-7")
    notice = jobs.starting_over_notice(output_dir, checkpoint_dir)
    assert f"--from-savepoint {checkpoint_dir}" in notice
    assert str(checkpoint) in notice


class _FakeFlink(http.server.BaseHTTPRequestHandler):
    """Serves the REST calls of RestClient with the bodies Flink 2.3's REST API returns."""

    savepoint_polls_before_done = 2
    failure = None
    drop_status = False
    target_dir: Path | None = None
    requests: list[tuple[str, str, dict | None]] = []

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).requests.append((self.command, self.path, body))
        return body

    def do_GET(self):
        self._record()
        cls = type(self)
        if self.path == "/jobs/overview":
            self._reply(200, {"jobs": [
                {"jid": "j1", "name": "older", "state": "FINISHED", "start-time": 1000, "duration": 5},
                {"jid": "j2", "name": "newer", "state": "RUNNING", "start-time": 2000, "duration": 7},
            ]})
        elif self.path.startswith("/jobs/j2/savepoints/"):
            if cls.drop_status:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            cls.savepoint_polls_before_done -= 1
            if cls.savepoint_polls_before_done > 0:
                self._reply(200, {"status": {"id": "IN_PROGRESS"}})
            elif cls.failure:
                self._reply(200, {"status": {"id": "COMPLETED"},
                                  "operation": {"failure-cause": {"stack-trace": cls.failure}}})
            else:
                self._reply(200, {"status": {"id": "COMPLETED"},
                                  "operation": {"location": "file:/sp/savepoint-j2-abc"}})
        elif self.path == "/jobs/j2/checkpoints":
            self._reply(200, {"latest": {"completed": {"external_path": "file:/ck/j2/chk-9"}}})
        elif self.path == "/jobs/j2":
            self._reply(200, {"state": "RUNNING", "vertices": [{"parallelism": 1}, {"parallelism": 2}]})
        elif self.path == "/jobs/j1":
            self._reply(200, {"state": "FINISHED", "vertices": [{"parallelism": 1}]})
        else:
            self._reply(404, {"errors": [f"Not found: {self.path}"]})

    def do_POST(self):
        body = self._record()
        cls = type(self)
        if self.path == "/jobs/j2/stop":
            if cls.drop_status and cls.target_dir is not None:
                _write_metadata(cls.target_dir / "savepoint-j2-0a1b2c")
            self._reply(202, {"request-id": "r1"})
        else:
            self._reply(404, {"errors": [f"Not found: {self.path} {body}"]})

    def do_PATCH(self):
        self._record()
        self._reply(202, {})

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def _fake_flink(**attributes):
    handler = type("Handler", (_FakeFlink,), {"requests": [], **attributes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_rest_client_lists_newest_first():
    with _fake_flink() as (address, _):
        listed = jobs.RestClient(address).list_jobs()
    assert [job.job_id for job in listed] == ["j2", "j1"]
    assert listed[0].state == "RUNNING"


def test_stop_with_savepoint_polls_until_done(tmp_path):
    with _fake_flink() as (address, handler):
        location = jobs.RestClient(address).stop_with_savepoint("j2", tmp_path / "sp", 30)
    assert location == Path("/sp/savepoint-j2-abc")
    method, path, body = handler.requests[0]
    assert (method, path) == ("POST", "/jobs/j2/stop")
    assert body == {"targetDirectory": (tmp_path / "sp").resolve().as_uri(), "drain": False}
    assert sum(1 for _, path, _ in handler.requests if "/savepoints/" in path) == 2


def test_stop_with_savepoint_reports_failure(tmp_path):
    with _fake_flink(failure="java.lang.Exception: disk full\n\tat x") as (address, _):
        with pytest.raises(jobs.JobsError, match="failed: java.lang.Exception: disk full"):
            jobs.RestClient(address).stop_with_savepoint("j2", tmp_path, 30)


def test_stop_finds_savepoint_when_endpoint_goes_away(tmp_path):
    target = tmp_path / "sp"
    target.mkdir()
    with _fake_flink(drop_status=True, target_dir=target) as (address, _):
        location = jobs.RestClient(address).stop_with_savepoint("j2", target, 30)
    assert location == target / "savepoint-j2-0a1b2c"


def test_rest_client_names_missing_endpoint():
    port = jobs.free_port()
    with pytest.raises(jobs.JobsError, match=f"no Flink REST endpoint responds at 127.0.0.1:{port}"):
        jobs.RestClient(f"127.0.0.1:{port}").list_jobs()


def test_rest_client_rejects_bad_address():
    with pytest.raises(jobs.JobsError, match="invalid REST address 'localhost'"):
        jobs.RestClient("localhost")


def test_jobs_commands_print_jobs_and_savepoint(tmp_path, capsys):
    with _fake_flink() as (address, handler):
        assert cli.main(["jobs", "list", "--jobmanager", address]) == 0
        listing = capsys.readouterr().out
        assert cli.main(["jobs", "stop", "j2", "--jobmanager", address,
                         "--savepoint", str(tmp_path)]) == 0
        stopped = capsys.readouterr().out
        assert cli.main(["jobs", "stop", "j2", "--jobmanager", address]) == 0
        cancelled = capsys.readouterr().out
    lines = listing.splitlines()
    assert lines[0].split() == ["JOB", "ID", "STATE", "STARTED", "RUNNING", "PARALLELISM", "NAME"]
    assert lines[1].split()[0:2] == ["j2", "RUNNING"]
    assert lines[1].split()[-2:] == ["2", "newer"]
    assert "--from-savepoint /sp/savepoint-j2-abc" in stopped
    assert "cancelled without a savepoint" in cancelled
    assert "--from-savepoint /ck/j2/chk-9" in cancelled
    assert ("PATCH", "/jobs/j2?mode=cancel", None) in handler.requests


def test_ddl_follows_signature(census_export):
    ddl = cli.model_ddl(census_export.export_dir, name="census", temporary=True)
    assert ddl.startswith("CREATE TEMPORARY MODEL `census`\nINPUT (\n  `age` BIGINT,\n")
    assert "OUTPUT (\n  `probability` FLOAT,\n  `logit` FLOAT,\n  `model_version` BIGINT," in ddl
    assert f"'path' = '{census_export.export_dir.resolve()}'" in ddl
    inputs = ddl.split("INPUT (")[1].split(")")[0]
    assert inputs.count("`") == 2 * len(census_export.manifest["signature"]["inputs"])
