"""The `pyscoring` command: train, deploy."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
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


def _train(args: argparse.Namespace) -> int:
    config = _config(args, {
        "train.workers": args.workers,
        "train.ps": args.ps,
        "train.epochs": args.epochs,
    })
    # Imported here: TensorFlow loads only for the command that needs it.
    from pyscoring import training

    result = training.train(
        config,
        train_path=args.data,
        test_path=args.test_data,
        export_dir=args.export_dir,
        checkpoint_dir=args.checkpoint_dir or args.export_dir / "checkpoints",
    )
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
    })
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
    )
    job = deploy.deploy(request)
    print(f"job {job.job_id} scores model {job.model_name} version {job.model_version}")
    print(f"scores: {Path(args.output).resolve() / 'scores'}")
    print(f"Prometheus file_sd targets: {job.targets_file}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyscoring",
        description="Train TensorFlow models and score them in Flink streaming jobs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the census model and export a version")
    _add_common(train)
    train.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DATA,
                       help="training file in the UCI Adult format (default: %(default)s)")
    train.add_argument("--test-data", type=Path, default=DEFAULT_TEST_DATA,
                       help="evaluation file (default: %(default)s)")
    train.add_argument("--export-dir", type=Path, required=True,
                       help="folder that receives the new version <N>/")
    train.add_argument("--checkpoint-dir", type=Path,
                       help="checkpoint folder (default: EXPORT_DIR/checkpoints)")
    train.add_argument("--workers", type=int, help="worker nodes (train.workers)")
    train.add_argument("--ps", type=int, help="parameter-server nodes (train.ps)")
    train.add_argument("--epochs", type=int, help="passes over the data (train.epochs)")
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
                             "with TensorFlow Java; auto picks it when the model fits "
                             "scoring.jvm.max-model-bytes")
    deploy.add_argument("--rows-per-second", type=float,
                        help="rate limit of the line source (source.rows-per-second)")
    deploy.add_argument("--loop", action="store_true",
                        help="read the input again after its end, forever")
    deploy.add_argument("--parallelism", type=int, help="job parallelism (deploy.parallelism)")
    deploy.set_defaults(handler=_deploy)
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
