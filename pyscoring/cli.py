"""The `pyscoring` command: train, deploy, cluster."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from pyscoring.config import Config, ConfigError, parse_assignments

LOG = logging.getLogger("pyscoring")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRAIN_DATA = PROJECT_ROOT / "data" / "adult" / "adult.data"
DEFAULT_TEST_DATA = PROJECT_ROOT / "data" / "adult" / "adult.test"


def _config(args: argparse.Namespace, extra: dict) -> Config:
    overrides = parse_assignments(args.set or [])
    overrides.update({key: value for key, value in extra.items() if value is not None})
    return Config(overrides)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="set a configuration key (see docs/configuration.md); repeatable",
    )


def _add_jobmanager(parser: argparse.ArgumentParser, key: str) -> None:
    parser.add_argument(
        "--jobmanager", metavar="HOST:PORT",
        help=f"REST address of a running Flink cluster to submit the job to ({key}), "
             "for example the one `pyscoring cluster start` prints; default: an embedded "
             "mini cluster in this process",
    )


def _web_ui_job_url(rest_address: str, job_id: str) -> str:
    return f"http://{rest_address}/#/job/running/{job_id}/overview"


def _with_cluster_defaults(config: Config, args: argparse.Namespace, jobmanager: str) -> Config:
    """Apply the metric settings the cluster at `jobmanager` advertises, unless --set gave them."""
    from pyscoring import standalone

    explicit = parse_assignments(args.set or [])
    try:
        advertised = standalone.cluster_job_defaults(jobmanager)
    except standalone.ClusterError as error:
        raise ConfigError(f"--jobmanager {jobmanager}: {error}") from None
    defaults = {key: value for key, value in advertised.items() if key not in explicit}
    if defaults:
        LOG.info("Using the settings advertised by the cluster at %s: %s", jobmanager,
                 ", ".join(f"{key}={value}" for key, value in sorted(defaults.items())))
        config = config.with_overrides(defaults)
    return config


def _train(args: argparse.Namespace) -> int:
    config = _config(args, {
        "train.workers": args.workers,
        "train.ps": args.ps,
        "train.epochs": args.epochs,
        "train.model": args.model,
        "train.jobmanager": args.jobmanager,
        "train.chief": args.chief,
        "train.evaluator": args.evaluator,
    })
    if config["train.jobmanager"] and config["train.workers"] == 1 and config["train.ps"] == 0:
        raise ConfigError(
            f"--jobmanager {config['train.jobmanager']}: with --workers 1 --ps 0 training runs "
            "in this process; pass --ps 1 or more to train on the Flink cluster")
    if (config["train.chief"] or config["train.evaluator"]) and config["train.ps"] == 0:
        raise ConfigError(
            "--chief and --evaluator (train.chief, train.evaluator) add nodes to the ML "
            "cluster, which needs parameter servers; pass --ps 1 or more")
    # Imported here: TensorFlow loads only for the command that needs it.
    from pyscoring import training
    from pyscoring.cluster.job import ClusterTrainingError

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    # A cluster job is cancelled on Ctrl-C or SIGTERM, which stops its nodes.
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = training.train(
            config,
            train_path=args.data,
            test_path=args.test_data,
            export_dir=args.export_dir,
            checkpoint_dir=args.checkpoint_dir or args.export_dir / "checkpoints",
        )
    except ClusterTrainingError as error:
        print(f"pyscoring train: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        LOG.info("Training interrupted")
        return 130
    print(f"exported version {result.version} to {result.path}")
    for name, value in sorted(result.metrics.items()):
        print(f"  {name}: {value:.4f}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from pyscoring import deploy

    config = _config(args, {
        "scoring.path": args.path,
        "source.rows-per-second": args.rows_per_second,
        "source.loop": "true" if args.loop else None,
        "deploy.parallelism": args.parallelism,
        "deploy.jobmanager": args.jobmanager,
        "deploy.pass-through": args.pass_through,
        "deploy.rename-outputs": ",".join(args.rename) if args.rename else None,
        "deploy.event-time-column": args.event_time_column,
    })
    if config["deploy.jobmanager"]:
        config = _with_cluster_defaults(config, args, config["deploy.jobmanager"])
    input_format = deploy.CENSUS_FORMAT
    if args.columns:
        input_format = deploy.InputFormat.parse(args.columns, args.delimiter)
    request = deploy.DeployRequest(
        model_dir=args.model,
        output_dir=args.output,
        input_path=args.input,
        input_format=input_format,
        source_options=parse_assignments(args.source_option) if args.source_option else None,
        sink_options=parse_assignments(args.sink_option) if args.sink_option else None,
        config=config,
        restore_path=args.from_savepoint,
    )
    if args.from_savepoint is None:
        from pyscoring import jobs

        notice = jobs.starting_over_notice(
            Path(args.output), jobs.checkpoint_dir_of(config, args.output)
        )
        if notice:
            print(f"WARNING: {notice}", flush=True)
    job = deploy.deploy(request)
    print(f"job {job.job_id} scores model {job.model_name} version {job.model_version}")
    if config["deploy.jobmanager"]:
        print(f"runs on the Flink cluster at {job.rest_address}; follow it at "
              f"{_web_ui_job_url(job.rest_address, job.job_id)}")
        print("this command waits for the job; Ctrl-C cancels it on the cluster")
    elif job.rest_address:
        print(f"runs in the embedded Flink mini cluster of this process; follow it at "
              f"{_web_ui_job_url(job.rest_address, job.job_id)}")
    print(f"scores: {Path(args.output).resolve() / 'scores'}")
    print(f"Prometheus file_sd targets: {job.targets_file}")
    if job.rest_address:
        print(f"stop it with a savepoint: pyscoring jobs stop {job.job_id} "
              f"--jobmanager {job.rest_address} --savepoint DIR", flush=True)
    interrupted = False

    def on_signal(signum, frame):
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    printed = set()
    try:
        while not job.wait(timeout_s=1.0):
            for target in job.targets_writer.refresh():
                if target not in printed:
                    print(f"metrics: http://{target}/metrics", flush=True)
                    printed.add(target)
    except KeyboardInterrupt:
        LOG.info("Stopping: cancelling job %s", job.job_id)
        job.cancel()
        return 143 if interrupted else 130
    finally:
        # The embedded cluster's endpoints close when this process exits.
        job.targets_writer.clear()
    if request.sink_options is None:
        output = Path(args.output).resolve()
        scored = len(deploy.read_json_lines(output / "scores"))
        dead = len(deploy.read_json_lines(output / "dead-letters"))
        print(f"{scored} rows scored, {dead} dead letters")
        if scored == 0 and dead > 0:
            print(f"warning: no row was scored; the reasons are in {output / 'dead-letters'}",
                  file=sys.stderr)
    print(f"job {job.job_id} finished")
    return 0


def _jobs_list(args: argparse.Namespace) -> int:
    from pyscoring import jobs

    client = jobs.RestClient(args.jobmanager)
    listed = client.list_jobs()
    if not listed:
        print(f"no jobs at {client.address}")
        return 0
    print(f"{'JOB ID':32}  {'STATE':11}  {'STARTED':19}  {'RUNNING':>9}  "
          f"{'PARALLELISM':>11}  NAME")
    for job in listed:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time_ms / 1000))
        parallelism = client.job_parallelism(job.job_id)
        print(f"{job.job_id:32}  {job.state:11}  {started:19}  "
              f"{job.duration_ms / 1000:8.0f}s  {parallelism:11d}  {job.name}")
    return 0


def _jobs_stop(args: argparse.Namespace) -> int:
    from pyscoring import jobs

    client = jobs.RestClient(args.jobmanager)
    if args.savepoint:
        location = client.stop_with_savepoint(args.job_id, args.savepoint, args.timeout)
        print(f"job {args.job_id} stopped with the savepoint {location}")
        print(f"resume it with: pyscoring deploy ... --from-savepoint {location}")
        return 0
    checkpoint = client.latest_checkpoint(args.job_id)
    client.cancel(args.job_id)
    print(f"job {args.job_id} cancelled without a savepoint")
    if checkpoint:
        print(f"resume it from its newest retained checkpoint: "
              f"pyscoring deploy ... --from-savepoint {checkpoint}")
    return 0


def model_ddl(export_dir: Path, name: str | None = None, temporary: bool = False) -> str:
    """Return the CREATE MODEL statement that serves an export through ML_PREDICT.

    INPUT and OUTPUT follow the signature of the newest complete version;
    OUTPUT adds model_version, error_code and error, so that rows that
    cannot be scored come out with their error instead of failing the job.
    """
    from pyscoring import deploy, manifest

    version_dir = deploy.resolve_version_dir(export_dir)
    model = manifest.read_manifest(version_dir)

    def column(tensor: dict) -> str:
        sql_type = deploy._SQL_TYPES[tensor["dtype"]]
        if len(tensor["shape"]) != 1:
            sql_type = f"ARRAY<{sql_type}>"
        return f"`{tensor['name']}` {sql_type}"

    inputs = [column(tensor) for tensor in model["signature"]["inputs"]]
    outputs = [column(tensor) for tensor in model["signature"]["outputs"]]
    outputs += ["`model_version` BIGINT", "`error_code` STRING", "`error` STRING"]
    path = str(Path(export_dir).resolve()).replace("'", "''")
    separator = ",\n  "
    return (
        f"CREATE {'TEMPORARY ' if temporary else ''}MODEL `{name or model['model_name']}`\n"
        f"INPUT (\n  {separator.join(inputs)}\n)\n"
        f"OUTPUT (\n  {separator.join(outputs)}\n)\n"
        f"WITH (\n  'provider' = 'pyscoring',\n  'path' = '{path}'\n);"
    )


def _ddl(args: argparse.Namespace) -> int:
    print(model_ddl(args.export_dir, args.name, args.temporary))
    return 0


def _check(args: argparse.Namespace) -> int:
    from pyscoring import check

    result = check.check(args.export_dir, rows=args.rows, input_path=args.input)
    print(check.format_result(result))
    return 0 if result.passed else 1


def _cluster_dir(args: argparse.Namespace, config: Config) -> Path:
    from pyscoring import standalone

    return Path(args.dir or config["cluster.dir"] or standalone.DEFAULT_CLUSTER_DIR).resolve()


def _cluster_start(args: argparse.Namespace) -> int:
    from pyscoring import standalone

    config = _config(args, {
        "cluster.taskmanagers": args.taskmanagers,
        "cluster.taskmanager.slots": args.slots,
        "cluster.rest-port": args.rest_port,
        "cluster.jobmanager.rpc-port": args.rpc_port,
    })
    flink_options = parse_assignments(args.flink_option or [])
    settings = standalone.ClusterSettings.from_config(config, flink_options=flink_options)
    conf_dir = _cluster_dir(args, config)
    try:
        cluster = standalone.start(conf_dir, settings)
    except standalone.ClusterError as error:
        print(f"pyscoring cluster start: error: {error}", file=sys.stderr)
        return 1
    print(f"started a Flink cluster in {conf_dir}")
    print(f"  job manager:  {cluster.jobmanager_rpc_address} (pid {cluster.jobmanager_pid})")
    print(f"  web UI, REST: {cluster.web_ui_url}   submit with --jobmanager {cluster.rest_address}")
    for process in cluster.taskmanagers:
        print(f"  task manager: {process.resource_id} (pid {process.pid}, "
              f"{settings.slots_per_taskmanager} slot(s))")
    print(f"  metrics:      each task manager's scorer binds a free port of "
          f"{settings.metrics_host}:{settings.metrics_port_range}")
    print(f"  logs:         {cluster.log_dir}")
    print(f"stop it with: pyscoring cluster stop --dir {conf_dir}")
    return 0


def _cluster_stop(args: argparse.Namespace) -> int:
    from pyscoring import standalone

    conf_dir = _cluster_dir(args, _config(args, {}))
    try:
        stopped = standalone.stop(conf_dir)
    except standalone.ClusterError as error:
        print(f"pyscoring cluster stop: error: {error}", file=sys.stderr)
        return 1
    if stopped:
        print(f"stopped the cluster in {conf_dir} (processes {', '.join(map(str, stopped))})")
    else:
        print(f"no cluster runs in {conf_dir}")
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    """Print the cluster's state; return 0 while it runs and 3 when it does not.

    3 is the exit code of `service status` for a service that is not running.
    """
    from pyscoring import standalone

    conf_dir = _cluster_dir(args, _config(args, {}))
    report = standalone.status(conf_dir)
    if not report.running or report.error:
        print(f"cluster in {conf_dir}: not running ({report.error})")
        return 3
    slots_total = sum(entry.get("slotsNumber", 0) for entry in report.taskmanagers)
    slots_free = sum(entry.get("freeSlots", 0) for entry in report.taskmanagers)
    print(f"cluster in {conf_dir}: running, Flink {report.flink_version}")
    print(f"  job manager:   {report.jobmanager_rpc_address} (pid {report.jobmanager_pid})")
    print(f"  web UI, REST:  http://{report.rest_address}   submit with --jobmanager "
          f"{report.rest_address}")
    print(f"  task managers: {len(report.taskmanagers)} registered, {slots_total} slot(s), "
          f"{slots_free} free; {report.jobs_running} job(s) running")
    registered = {entry["id"]: entry for entry in report.taskmanagers}
    for process, alive in report.processes:
        entry = registered.pop(process.resource_id, None)
        if entry:
            state = f"registered, {entry.get('slotsNumber', 0)} slot(s), {entry.get('freeSlots', 0)} free"
        else:
            state = "running, not registered" if alive else "ended"
        print(f"    {process.resource_id}  pid {process.pid}  {state}  log {process.log_file}")
    for resource_id, entry in registered.items():
        print(f"    {resource_id}  not started by this command, {entry.get('slotsNumber', 0)} slot(s)")
    print(f"  metrics:       pyscoring endpoints on ports {report.metrics_port_range}")
    print(f"  logs:          {report.log_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyscoring",
        description="Train TensorFlow models and score them in Flink streaming jobs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a model (default: the census model) and export a version",
        description="Train a model module in this process (1 worker, 0 ps) or on "
                    "the Flink ML cluster (any other --workers/--ps), then export it.")
    _add_common(train)
    train.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DATA,
                       help="training file in the UCI Adult format (default: %(default)s)")
    train.add_argument("--test-data", type=Path, default=DEFAULT_TEST_DATA,
                       help="evaluation file (default: %(default)s)")
    train.add_argument("--export-dir", type=Path, required=True,
                       help="folder that receives the new version <N>/")
    train.add_argument("--checkpoint-dir", type=Path,
                       help="checkpoint folder (default: EXPORT_DIR/checkpoints)")
    train.add_argument("--workers", type=int,
                       help="worker nodes (train.workers); more than 1 needs --ps")
    train.add_argument("--ps", type=int,
                       help="parameter-server nodes (train.ps); 0 trains in this process")
    train.add_argument("--epochs", type=int, help="passes over the data (train.epochs)")
    train.add_argument("--model", metavar="MODULE_OR_FILE",
                       help="model module as a dotted name importable from the Python path "
                            "or the path of a .py file (train.model; default: "
                            "models.census_wide_deep); its ModelParams fields are set with "
                            "--set train.model-params='{...}'")
    train.add_argument("--chief", action="store_true", default=None,
                       help="run a chief node that creates the variables, writes the "
                            "checkpoints and the exports and trains on no records "
                            "(train.chief); needs --ps")
    train.add_argument("--evaluator", action="store_true", default=None,
                       help="run an evaluator node that evaluates each checkpoint on the "
                            "test data into RUN_DIR/evaluations.jsonl (train.evaluator); "
                            "needs --ps")
    _add_jobmanager(train, "train.jobmanager")
    train.set_defaults(handler=_train)

    deploy = commands.add_parser("deploy", help="run a streaming scoring job")
    _add_common(deploy)
    deploy.add_argument("--model", type=Path, required=True,
                        help="EXPORT_DIR (newest version) or one version folder")
    deploy.add_argument("--input", type=Path,
                        help="text file or folder of files to score, one row per line")
    deploy.add_argument("--output", type=Path, required=True,
                        help="folder for scores/, dead-letters/ and the targets file")
    deploy.add_argument("--columns",
                        help="input columns in field order as 'name TYPE, ...' with Flink SQL "
                             "types BIGINT, INT, DOUBLE, FLOAT, BOOLEAN or STRING (default: the "
                             "census layout)")
    deploy.add_argument("--delimiter", default=",",
                        help="field delimiter of --input lines (default: %(default)r)")
    deploy.add_argument("--source-option", action="append", metavar="KEY=VALUE",
                        help="Flink SQL connector option of a source table that replaces "
                             "--input; --columns is then its schema")
    deploy.add_argument("--sink-option", action="append", metavar="KEY=VALUE",
                        help="Flink SQL connector option of the scores table")
    deploy.add_argument("--path", choices=("auto", "jvm", "ps"),
                        help="scoring path (scoring.path): jvm scores in the task-manager JVM "
                             "with TensorFlow Java; ps scores in Python worker nodes whose "
                             "variables stay on parameter-server nodes; auto picks jvm when "
                             "the model fits scoring.jvm.max-model-bytes and ps otherwise")
    deploy.add_argument("--rows-per-second", type=float,
                        help="rate limit of the line source (source.rows-per-second)")
    deploy.add_argument("--loop", action="store_true",
                        help="read the input again after its end, forever")
    deploy.add_argument("--parallelism", type=int, help="job parallelism (deploy.parallelism)")
    _add_jobmanager(deploy, "deploy.jobmanager")
    deploy.add_argument("--pass-through", metavar="COLUMN,...",
                        help="input columns copied into every score row; * for all, an empty "
                             "value for none (deploy.pass-through, default: *)")
    deploy.add_argument("--rename", action="append", metavar="OUTPUT=NAME",
                        help="name of a model output in the score rows, for example "
                             "output_0=score; repeatable (deploy.rename-outputs)")
    deploy.add_argument("--event-time-column", metavar="COLUMN",
                        help="input column with each row's event time, from which the end-to-end "
                             "latency metric is measured (deploy.event-time-column)")
    deploy.add_argument("--from-savepoint", type=Path, metavar="DIR",
                        help="resume from a savepoint of `pyscoring jobs stop`, or from the newest "
                             "retained checkpoint in a checkpoint folder; the parallelism may "
                             "differ from the stopped job's")
    deploy.set_defaults(handler=_deploy)

    jobs = commands.add_parser("jobs", help="list and stop jobs on a Flink cluster")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_list = jobs_commands.add_parser("list", help="list the jobs of a Flink cluster")
    jobs_stop = jobs_commands.add_parser(
        "stop", help="stop a job with a savepoint, or cancel it without one")
    for parser_ in (jobs_list, jobs_stop):
        parser_.add_argument("--jobmanager", metavar="HOST:PORT", default="127.0.0.1:8081",
                             help="REST address of the cluster, as `pyscoring deploy` printed "
                                  "it (default: %(default)s)")
    jobs_stop.add_argument("job_id", metavar="JOB", help="job id, as `pyscoring jobs list` shows it")
    jobs_stop.add_argument("--savepoint", type=Path, metavar="DIR",
                           help="folder that receives the savepoint; without it the job is "
                                "cancelled and only its retained checkpoints remain")
    jobs_stop.add_argument("--timeout", type=float, default=300.0,
                           help="seconds to wait for the savepoint (default: %(default)s)")
    jobs_list.set_defaults(handler=_jobs_list)
    jobs_stop.set_defaults(handler=_jobs_stop)

    cluster = commands.add_parser(
        "cluster", help="start, stop or inspect a standalone Flink cluster on 127.0.0.1")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    cluster_start = cluster_commands.add_parser(
        "start", help="start a job manager and task managers; return once all registered")
    cluster_stop = cluster_commands.add_parser("stop", help="stop every process of the cluster")
    cluster_status = cluster_commands.add_parser(
        "status", help="show the job manager, web UI, task managers and slots; exit 3 when "
                       "the cluster does not run")
    for parser_ in (cluster_start, cluster_stop, cluster_status):
        _add_common(parser_)
        parser_.add_argument("--dir", type=Path,
                             help="cluster folder with its config.yaml, logs and process ids "
                                  "(cluster.dir, default: build/flink-cluster)")
    cluster_start.add_argument("--taskmanagers", type=int,
                               help="task managers to start (cluster.taskmanagers)")
    cluster_start.add_argument("--slots", type=int,
                               help="task slots per task manager (cluster.taskmanager.slots)")
    cluster_start.add_argument("--rest-port", type=int,
                               help="port of the REST API and web UI (cluster.rest-port)")
    cluster_start.add_argument("--rpc-port", type=int,
                               help="port of the job manager's RPC endpoint "
                                    "(cluster.jobmanager.rpc-port)")
    cluster_start.add_argument("--flink-option", action="append", metavar="KEY=VALUE",
                               help="Flink configuration entry written into config.yaml after "
                                    "the generated ones; repeatable")
    cluster_start.set_defaults(handler=_cluster_start)
    cluster_stop.set_defaults(handler=_cluster_stop)
    cluster_status.set_defaults(handler=_cluster_status)

    check = commands.add_parser(
        "check", help="load a model version with TensorFlow Java and Python TensorFlow and "
                      "compare their scores; exit 1 when they disagree or a load fails")
    check.add_argument("export_dir", type=Path, metavar="EXPORT_DIR",
                       help="export directory (its newest version) or one version folder")
    check.add_argument("--rows", type=int, default=64,
                       help="sample rows to score (default: %(default)s)")
    check.add_argument("--input", type=Path,
                       help="census-format file whose first rows replace the synthetic "
                            "sample rows")
    check.set_defaults(handler=_check)

    ddl = commands.add_parser(
        "ddl", help="print the CREATE MODEL statement that serves an export through ML_PREDICT")
    ddl.add_argument("export_dir", type=Path, metavar="EXPORT_DIR",
                     help="export directory (its newest version) or one version folder")
    ddl.add_argument("--name", help="model name (default: the manifest's model_name)")
    ddl.add_argument("--temporary", action="store_true",
                     help="print CREATE TEMPORARY MODEL, which needs no persistent catalog")
    ddl.set_defaults(handler=_ddl)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # PyFlink imports Apache Beam, which logs missing optional cloud modules at INFO.
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"pyscoring {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
