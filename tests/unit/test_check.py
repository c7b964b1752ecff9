"""Comparison of the two runtimes' reports in `pyscoring check`, without running them."""

from __future__ import annotations

from pyscoring import check

MODEL = {
    "signature": {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1]},
                   {"name": "label", "dtype": "string", "shape": [-1]},
                   {"name": "n", "dtype": "int64", "shape": [-1]},
                   {"name": "flag", "dtype": "bool", "shape": [-1]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1]},
                    {"name": "pair", "dtype": "float32", "shape": [-1, 2]}],
    },
}


def _java(outputs, errors=None, **extra):
    report = {"tensorflow_version": "2.18.0", "ops": ["Const"], "missing_ops": [],
              "outputs": outputs, "errors": errors or [None] * len(outputs["y"])}
    report.update(extra)
    return report


def test_equal_outputs_pass():
    outputs = {"y": [1.0, 2.0], "pair": [[1.0, -1.0], [2.0, -2.0]]}
    problems, differences = check.compare(MODEL, _java(outputs), {"outputs": outputs})
    assert problems == []
    assert differences == {"y": 0.0, "pair": 0.0}


def test_difference_above_tolerance_names_output_and_row():
    problems, _ = check.compare(
        MODEL,
        _java({"y": [1.0, 2.0], "pair": [[0.0, 0.0], [0.0, 0.0]]}),
        {"outputs": {"y": [1.0, 2.1], "pair": [[0.0, 0.0], [0.0, 0.0]]}},
    )
    assert len(problems) == 1
    assert "output 'y' value 1" in problems[0]


def test_missing_op_is_reported_once():
    java = {"tensorflow_version": "2.18.0", "missing_ops": ["Foo"],
            "error": "The graph ... uses the ops [Foo]"}
    problems, _ = check.compare(MODEL, java, {"error": "NotFoundError: Op type not registered"})
    assert problems[0].startswith("the graph uses ops that TensorFlow Java 2.18.0 does not "
                                  "register: Foo")
    assert not any(problem.startswith("TensorFlow Java failed") for problem in problems)
    assert "Python TensorFlow failed: NotFoundError" in problems[1]


def test_rows_java_rejects_are_problems():
    outputs = {"y": [None, 2.0], "pair": [None, [2.0, -2.0]]}
    problems, _ = check.compare(MODEL, _java(outputs, errors=["TF_ERROR: bad", None]),
                                {"outputs": {"y": [1.0, 2.0], "pair": [[1.0, -1.0], [2.0, -2.0]]}})
    assert "TensorFlow Java rejected 1 sample rows; row 0: TF_ERROR: bad" in problems[0]


def test_sample_rows_follow_dtypes_and_seed():
    rows = check.sample_rows(MODEL, 5, seed=3)
    assert set(rows) == {"x", "label", "n", "flag"}
    assert all(isinstance(value, float) and 0 <= value < 10 for value in rows["x"])
    assert all(isinstance(value, int) and 0 <= value <= 100 for value in rows["n"])
    assert all(isinstance(value, bool) for value in rows["flag"])
    assert all(isinstance(value, str) for value in rows["label"])
    assert rows == check.sample_rows(MODEL, 5, seed=3)
