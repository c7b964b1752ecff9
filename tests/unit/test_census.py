from pathlib import Path

import numpy as np
import pytest

from pyscoring import census

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "adult"

TRAIN_LINE = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, "
    "Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K"
)
TEST_LINE = (
    "25, ?, 226802, 11th, 7, Never-married, ?, Own-child, Black, Male, "
    "0, 0, 40, ?, >50K."
)


def write_lines(path, lines, ending="\r\n", final_blank=False):
    text = ending.join(lines) + ending
    if final_blank:
        text += ending
    path.write_bytes(text.encode("utf-8"))
    return path


def test_schema_columns_in_file_order():
    assert [column.name for column in census.COLUMNS] == [
        "age", "workclass", "fnlwgt", "education", "education_num",
        "marital_status", "occupation", "relationship", "race", "sex",
        "capital_gain", "capital_loss", "hours_per_week", "native_country",
        "income",
    ]
    assert census.FEATURE_NAMES == tuple(c.name for c in census.COLUMNS[:-1])
    assert census.INT_COLUMNS == (
        "age", "fnlwgt", "education_num", "capital_gain", "capital_loss",
        "hours_per_week",
    )
    assert len(census.STRING_COLUMNS) == 8


def test_parse_line_types_and_label():
    row = census.parse_line(TRAIN_LINE + "\r\n")
    assert row["age"] == 39
    assert row["fnlwgt"] == 77516
    assert row["capital_gain"] == 2174
    assert row["workclass"] == "State-gov"
    assert row["native_country"] == "United-States"
    assert row["income"] == 0
    assert set(row) == {column.name for column in census.COLUMNS}


def test_parse_line_keeps_question_mark():
    row = census.parse_line(TEST_LINE)
    assert row["workclass"] == "?"
    assert row["occupation"] == "?"
    assert row["native_country"] == "?"


@pytest.mark.parametrize(
    "label, expected",
    [("<=50K", 0), (">50K", 1), ("<=50K.", 0), (">50K.", 1)],
)
def test_parse_line_labels_with_and_without_dot(label, expected):
    line = TRAIN_LINE.rsplit(", ", 1)[0] + ", " + label
    assert census.parse_line(line)["income"] == expected


@pytest.mark.parametrize("line", ["", "\r\n", "   \n", "|1x3 Cross validator\r\n"])
def test_parse_line_skips_blank_and_comment(line):
    assert census.parse_line(line) is None


@pytest.mark.parametrize(
    "line, fragment",
    [
        (TRAIN_LINE.rsplit(", ", 1)[0], "expected 15 fields"),
        (TRAIN_LINE + ", extra", "found 16"),
        (TRAIN_LINE.replace("39,", "thirty-nine,", 1), "age is not an integer: 'thirty-nine'"),
        (TRAIN_LINE.replace("39,", "?,", 1), "age is missing"),
        (TRAIN_LINE.replace("<=50K", "50K"), "income is '50K'"),
        (TRAIN_LINE.replace("State-gov", ""), "workclass is empty"),
        (TRAIN_LINE.replace("39,", "99999999999999999999,", 1), "out of the int64 range"),
    ],
)
def test_parse_line_rejects_malformed(line, fragment):
    with pytest.raises(census.CensusFormatError) as caught:
        census.parse_line(line)
    assert fragment in str(caught.value)


def test_load_crlf_header_and_blank_last_line(tmp_path):
    path = write_lines(
        tmp_path / "adult.test",
        ["|1x3 Cross validator", TEST_LINE, TRAIN_LINE],
        final_blank=True,
    )
    features, labels, line_numbers = census.load(path)

    assert line_numbers.tolist() == [2, 3]
    assert labels.tolist() == [1, 0]
    assert labels.dtype == np.int64
    assert features["age"].tolist() == [25, 39]
    assert features["age"].dtype == np.int64
    assert features["workclass"].tolist() == ["?", "State-gov"]
    assert features["workclass"].dtype == object
    assert list(features) == list(census.FEATURE_NAMES)


def test_load_lf_endings(tmp_path):
    path = write_lines(tmp_path / "adult.data", [TRAIN_LINE, TEST_LINE], ending="\n")
    data = census.load(path)
    assert data.num_rows == 2
    assert data.features["native_country"].tolist() == ["United-States", "?"]


def test_row_keys_use_file_name_and_line(tmp_path):
    path = write_lines(tmp_path / "adult.test", ["|1x3 Cross validator", TEST_LINE])
    data = census.load(path)
    assert census.row_keys(path, data.line_numbers) == ["adult.test:2"]


def test_load_error_names_file_line_and_problem(tmp_path):
    path = write_lines(
        tmp_path / "adult.data",
        [TRAIN_LINE, TRAIN_LINE.replace("77516", "7x516")],
    )
    with pytest.raises(census.CensusFormatError) as caught:
        census.load(path)
    error = caught.value
    assert error.path == str(path)
    assert error.line_number == 2
    assert str(error) == f"{path}:2: fnlwgt is not an integer: '7x516'"


def test_load_rejects_invalid_utf8(tmp_path):
    path = tmp_path / "adult.data"
    path.write_bytes(TRAIN_LINE.encode() + b"\r\n" + b"\xff\xfe\r\n")
    with pytest.raises(census.CensusFormatError, match=r":2: line is not valid UTF-8"):
        census.load(path)


def test_load_rejects_file_without_rows(tmp_path):
    path = write_lines(tmp_path / "adult.test", ["|1x3 Cross validator"])
    with pytest.raises(census.CensusFormatError, match="contains no data rows"):
        census.load(path)


def test_load_real_files_row_counts():
    train = census.load(str(DATA_DIR / "adult.data"))
    test = census.load(str(DATA_DIR / "adult.test"))
    assert train.num_rows == 32561
    assert test.num_rows == 16281
    assert train.line_numbers[0] == 1
    assert train.line_numbers[-1] == 32561
    assert set(np.unique(test.labels)) == {0, 1}
    assert (train.features["occupation"] == "?").sum() == 1843
