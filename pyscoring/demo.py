"""`make demo`: train on census data, export, score adult.test in the JVM, report.

Training on data/adult/adult.data runs in a child process, because this
process hosts Flink's JVM with TensorFlow Java and two TensorFlow runtimes
must not share a process. The scorer then streams every row of
data/adult/adult.test. Last, the demo prints ROC AUC and accuracy of the
streamed scores and latency quantiles from the scraped histogram.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from pyscoring import census, deploy, manifest
from pyscoring.config import Config
from pyscoring.evaluation import accuracy, roc_auc
from pyscoring.metrics import (
    LATENCY_METRIC,
    counter_total,
    histogram_buckets,
    histogram_quantile,
    scrape,
)

LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


def ensure_export(export_dir: Path, retrain: bool) -> Path:
    """Train and export unless a version exists already; return the version folder."""
    if retrain or manifest.latest_version(export_dir) is None:
        print(f"== training the census model into {export_dir}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pyscoring.cli", "train", "--export-dir", str(export_dir)],
            check=True,
        )
    else:
        print(f"== reusing the export in {export_dir} (pass --retrain to train again)")
    return deploy.resolve_version_dir(export_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyscoring.demo")
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo-out")
    parser.add_argument("--retrain", action="store_true", help="train even if an export exists")
    parser.add_argument("--rows-per-second", type=float, default=2000.0,
                        help="rate of the streamed test rows (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    version_dir = ensure_export(args.workdir / "export", args.retrain)
    model = manifest.read_manifest(version_dir)
    run_dir = args.workdir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    test_path = ROOT / "data" / "adult" / "adult.test"
    print(f"== scoring {test_path.name} with {model['model_name']} version {model['version']} "
          f"on the JVM path at {args.rows_per_second:g} rows/s", flush=True)
    config = Config({"source.rows-per-second": args.rows_per_second})
    job = deploy.deploy(deploy.DeployRequest(
        model_dir=version_dir, output_dir=run_dir, input_path=test_path, config=config,
    ))
    shown = False
    started = time.monotonic()
    while not job.wait(timeout_s=1.0):
        targets = job.targets_writer.refresh()
        if targets and not shown:
            print(f"   scrape: http://{targets[0]}/metrics   (file_sd: {job.targets_file})",
                  flush=True)
            shown = True
    job.targets_writer.stop()
    print(f"   job {job.job_id} finished in {time.monotonic() - started:.1f} s")

    scores = deploy.read_json_lines(run_dir / "scores")
    dead = deploy.read_json_lines(run_dir / "dead-letters")
    data = census.load(test_path)
    label_by_key = dict(zip(census.row_keys(test_path, data.line_numbers), data.labels))
    labels = [label_by_key[row["key"]] for row in scores]
    probabilities = [row["probability"] for row in scores]
    print(f"== {len(scores)} rows scored, {len(dead)} dead letters, "
          f"{len(data.labels)} labelled rows in {test_path.name}")
    print(f"   ROC AUC  {roc_auc(labels, probabilities):.4f}")
    print(f"   accuracy {accuracy(labels, probabilities):.4f}")

    targets = job.targets_writer.endpoints()
    version_labels = {"model": model["model_name"], "version": str(model["version"])}
    families = scrape(targets[0])
    buckets = histogram_buckets(families[LATENCY_METRIC], version_labels)
    print(f"== latency from {LATENCY_METRIC} (scraped from {targets[0]}; "
          "interpolated within histogram buckets)")
    for quantile in (0.5, 0.95, 0.99):
        value = histogram_quantile(quantile, buckets)
        print(f"   p{int(quantile * 100):<3} {value * 1000:8.2f} ms")
    predictions = counter_total(families["pyscoring_predictions"], version_labels)
    print(f"   pyscoring_predictions_total {predictions:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
