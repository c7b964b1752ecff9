import io
import logging

import numpy as np
import pytest

from pyscoring.config import Config, ConfigError
from pyscoring.training import local, train


@pytest.mark.parametrize(
    "overrides", [{"train.workers": 2}, {"train.ps": 1}, {"train.workers": 3, "train.ps": 2}]
)
def test_local_trainer_rejects_multi_node(overrides):
    with pytest.raises(ConfigError, match="Flink ML cluster") as caught:
        local.validate_topology(Config(overrides))
    assert "pyscoring.training.train" in str(caught.value)


def test_train_rejects_workers_without_ps(tmp_path):
    with pytest.raises(ConfigError, match="set train.ps to 1 or more"):
        train(
            Config({"train.workers": 2}), tmp_path / "missing.data", tmp_path / "missing.test",
            tmp_path / "exports", tmp_path / "checkpoints",
        )
    assert not (tmp_path / "exports").exists()


def test_is_local_topology():
    assert local.is_local_topology(Config())
    assert not local.is_local_topology(Config({"train.ps": 1}))
    assert not local.is_local_topology(Config({"train.workers": 2, "train.ps": 1}))


def test_validate_topology_accepts_defaults():
    local.validate_topology(Config())


def test_iterate_batches_covers_each_row_per_epoch():
    batches = list(local.iterate_batches(num_rows=10, batch_size=4, epochs=2, seed=1))

    assert [len(batch) for batch in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(10))
    assert sorted(np.concatenate(batches[3:]).tolist()) == list(range(10))
    assert np.concatenate(batches[:3]).tolist() != np.concatenate(batches[3:]).tolist()


def test_iterate_batches_is_deterministic():
    first = list(local.iterate_batches(100, 16, 3, seed=7))
    second = list(local.iterate_batches(100, 16, 3, seed=7))
    other_seed = list(local.iterate_batches(100, 16, 3, seed=8))

    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_seed))


def test_iterate_batches_resume_yields_remaining_steps():
    full = list(local.iterate_batches(100, 16, 3, seed=7))
    resumed = list(local.iterate_batches(100, 16, 3, seed=7, start_step=9))

    assert len(full) == 3 * local.steps_per_epoch(100, 16)
    assert len(resumed) == len(full) - 9
    assert all(np.array_equal(a, b) for a, b in zip(full[9:], resumed))


def test_progress_logs_every_n_steps(caplog):
    reporter = local.ProgressReporter(log_every_steps=10, interactive=False, stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger=local.logger.name):
        for step in range(1, 36):
            reporter.update(step, examples=32, loss=0.5)
        reporter.close()

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("Training step 10 ")
    assert lines[2].startswith("Training step 30 ")
    assert "examples/s" in lines[0]
    assert lines[0].endswith("loss 0.5000")


def test_progress_rewrites_one_line_on_terminal():
    stream = io.StringIO()
    reporter = local.ProgressReporter(
        log_every_steps=10, last_step=50, stream=stream, interactive=True, refresh_seconds=0
    )
    reporter.update(1, examples=32, loss=0.25)
    reporter.update(2, examples=32, loss=0.125)
    reporter.close()

    output = stream.getvalue()
    assert output.count("\r") == 2
    assert "step 2/50" in output
    assert "loss 0.1250" in output
    assert output.endswith("\n")
    assert output.count("\n") == 1


def test_progress_close_shows_last_step():
    stream = io.StringIO()
    reporter = local.ProgressReporter(
        log_every_steps=10, stream=stream, interactive=True, refresh_seconds=3600
    )
    reporter.update(1, examples=32, loss=0.5)
    reporter.update(2, examples=32, loss=0.25)
    assert stream.getvalue() == ""

    reporter.close()
    assert stream.getvalue().startswith("\r\x1b[Kstep 2 ")
    assert stream.getvalue().endswith("loss 0.2500\n")
