"""Configuration keys of pyscoring, declared once.

Every key the CLI, the Python API and the Java scorer read is an `Option` in
`OPTIONS`. The reference page docs/configuration.md is generated from this
registry (`python -m pyscoring.config`), and a test keeps the Java side's
`io.pyscoring.scoring.ScoringOptions` in step with the `scoring.*` and
`metrics.*` keys here.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Iterable, Mapping


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One configuration key with its type, default and documentation."""

    key: str
    type: type
    default: Any
    description: str
    min_value: float | None = None
    choices: tuple[str, ...] | None = None
    # Java reads the key from the job parameters when True.
    jvm: bool = False

    def parse(self, raw: Any) -> Any:
        """Convert a raw value (a CLI string or a Python value) to the option's type."""
        if self.type is bool:
            value = _parse_bool(self.key, raw)
        elif self.type in (int, float):
            try:
                value = self.type(raw)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{self.key}: expected {self.type.__name__}, got {raw!r}"
                ) from None
        else:
            value = str(raw)
        if self.min_value is not None and value < self.min_value:
            raise ConfigError(
                f"{self.key}: {value!r} is below the minimum {self.min_value:g}"
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{self.key}: {value!r} is not one of {', '.join(self.choices)}"
            )
        return value


def _parse_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {raw!r}")


_MIB = 1024 * 1024

OPTIONS: tuple[Option, ...] = (
    # Scoring in the JVM.
    Option("scoring.max-batch-size", int, 64,
           "Rows in one TensorFlow call at most. Larger batches raise throughput "
           "until TensorFlow saturates the cores; a row waits for at most "
           "scoring.max-batch-delay-ms before its batch runs anyway.",
           min_value=1, jvm=True),
    Option("scoring.max-batch-delay-ms", int, 5,
           "Milliseconds a batch stays open after its first row before it runs "
           "even if it is not full. 0 runs every row as soon as the scoring "
           "thread is free, so batches form only under load.",
           min_value=0, jvm=True),
    Option("scoring.max-in-flight", int, 0,
           "Rows per scoring subtask that have entered the scorer and not yet "
           "left it (Flink's table.exec.async-table.max-concurrent-operations). "
           "0 means twice scoring.max-batch-size, so one batch fills while "
           "another runs.",
           min_value=0),
    Option("scoring.async-timeout-ms", int, 60000,
           "Milliseconds a row may wait for its result before the scorer fails "
           "it with a timeout.",
           min_value=1),
    Option("scoring.tensorflow.intra-op-threads", int, 0,
           "Threads one TensorFlow kernel may use (ConfigProto "
           "intra_op_parallelism_threads); 0 lets TensorFlow use every core.",
           min_value=0, jvm=True),
    Option("scoring.tensorflow.inter-op-threads", int, 0,
           "Threads that run independent TensorFlow ops at once (ConfigProto "
           "inter_op_parallelism_threads); 0 lets TensorFlow choose.",
           min_value=0, jvm=True),
    Option("scoring.jvm.max-model-bytes", int, 1024 * _MIB,
           "Bytes of a version's variables/ folder above which the model is "
           "not loaded into a task-manager JVM.",
           min_value=1, jvm=True),
    Option("scoring.path", str, "auto",
           "Which scorer serves the model: jvm, ps, or auto (decided by "
           "scoring.jvm.max-model-bytes).",
           choices=("auto", "jvm", "ps")),
    # Metrics.
    Option("metrics.host", str, "127.0.0.1",
           "Address the Prometheus endpoints bind to. Loopback by default; set "
           "0.0.0.0 only behind a firewall, because the endpoints have no "
           "authentication.",
           jvm=True),
    Option("metrics.port-range", str, "9250-9299",
           "Ports the Prometheus endpoints may bind, as FIRST-LAST; each "
           "process takes the first free port.",
           jvm=True),
    Option("metrics.targets-file", str, "",
           "Prometheus file_sd targets file that deploy keeps up to date with "
           "every endpoint of the job. Empty means "
           "OUTPUT_DIR/prometheus-targets.json.",
           jvm=True),
    # The deployed job.
    Option("deploy.parallelism", int, 1,
           "Parallelism of the scoring job's operators.", min_value=1),
    Option("deploy.checkpoint-interval-ms", int, 5000,
           "Milliseconds between checkpoints of the scoring job. The file sinks "
           "roll their part files at this interval and commit them at the next "
           "checkpoint, so a scored row becomes visible within about two intervals.",
           min_value=100),
    Option("deploy.restart-attempts", int, 3,
           "Restarts of the scoring job (fixed delay) before it fails.",
           min_value=0),
    Option("source.rows-per-second", float, 0.0,
           "Rate limit of the line source over all subtasks; 0 means unlimited.",
           min_value=0),
    Option("source.loop", bool, False,
           "Read the input again from the start after its end, forever."),
    # Training.
    Option("train.workers", int, 1, "Worker nodes.", min_value=1),
    Option("train.ps", int, 0, "Parameter-server nodes.", min_value=0),
    Option("train.epochs", int, 5, "Passes over bounded input.", min_value=1),
    Option("train.batch-size", int, 256, "Examples per training step and worker.",
           min_value=1),
    Option("train.learning-rate", float, 0.005,
           "Learning rate of the deep side's Adam optimizer.", min_value=0),
    Option("train.checkpoint-every-steps", int, 500,
           "Global steps between checkpoints written by the chief.", min_value=1),
    Option("train.log-every-steps", int, 200,
           "Global steps between progress lines when output is not a terminal.",
           min_value=1),
    Option("train.seed", int, 42, "Random seed of initialization and shuffling."),
)

OPTIONS_BY_KEY: dict[str, Option] = {option.key: option for option in OPTIONS}


class Config(Mapping[str, Any]):
    """Values for every key in OPTIONS: defaults overlaid with overrides."""

    def __init__(self, overrides: Mapping[str, Any] | None = None):
        values = {option.key: option.default for option in OPTIONS}
        for key, raw in (overrides or {}).items():
            option = OPTIONS_BY_KEY.get(key)
            if option is None:
                raise ConfigError(
                    f"unknown configuration key {key!r}; the keys are listed in "
                    "docs/configuration.md"
                )
            values[key] = option.parse(raw)
        self._values = values
        self._validate()

    def _validate(self) -> None:
        first, last = parse_port_range(self["metrics.port-range"])
        del first, last
        in_flight = self["scoring.max-in-flight"]
        batch = self["scoring.max-batch-size"]
        if in_flight and in_flight < batch:
            raise ConfigError(
                f"scoring.max-in-flight ({in_flight}) is below "
                f"scoring.max-batch-size ({batch}), so no batch could fill; "
                "raise it to at least twice the batch size or set 0"
            )

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        merged = dict(self._values)
        merged.update(overrides)
        return Config(merged)

    def effective_in_flight(self) -> int:
        """Rows in flight per scoring subtask, with 0 resolved."""
        return self["scoring.max-in-flight"] or 2 * self["scoring.max-batch-size"]

    def jvm_job_parameters(self) -> dict[str, str]:
        """Keys the Java scorer reads, as Flink global job parameters."""
        return {
            option.key: _format_value(self[option.key])
            for option in OPTIONS
            if option.jvm
        }


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse FIRST-LAST into two ports, first <= last."""
    parts = text.split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        first, last = int(parts[0]), int(parts[1])
    except ValueError:
        raise ConfigError(
            f"metrics.port-range: expected FIRST-LAST such as 9250-9299, got {text!r}"
        ) from None
    if not 1 <= first <= last <= 65535:
        raise ConfigError(
            f"metrics.port-range: {text!r} must satisfy 1 <= FIRST <= LAST <= 65535"
        )
    return first, last


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse KEY=VALUE strings from the command line."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def render_markdown(format_default: Callable[[Option], str] | None = None) -> str:
    """Render the reference table of docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `pyscoring/config.py` by `python -m pyscoring.config`;",
        "do not edit by hand. Set a key with `--set KEY=VALUE` on the command",
        "line or `Config({KEY: VALUE})` in Python. Keys marked JVM are passed",
        "to the Java scorer as Flink global job parameters.",
        "",
        "| key | type | default | JVM | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for option in OPTIONS:
        default = format_default(option) if format_default else repr(option.default)
        kind = option.type.__name__
        if option.choices:
            kind = " \\| ".join(option.choices)
        lines.append(
            f"| `{option.key}` | {kind} | `{default}` | "
            f"{'yes' if option.jvm else ''} | {option.description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown(lambda option: _format_value(option.default)))
