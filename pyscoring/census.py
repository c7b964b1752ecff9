"""Schema and parser of the UCI Adult (census income) files.

The files are read as the UCI repository ships them: fields separated by
", ", CRLF line endings, "?" for a missing value, and labels "<=50K" /
">50K" with a trailing "." in adult.test. Some copies of adult.test start
with the comment line "|1x3 Cross validator". The parser skips lines that
start with "|" and blank lines. Line numbers count every physical line from
1, skipped ones included, so `row_key` matches the key of the Java line
source `pyscoring-lines` (`<file name>:<line number>`).

This module imports only numpy, so deploy processes may use it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of the Adult files with its TensorFlow dtype name."""

    name: str
    dtype: str  # "int64" or "string"


COLUMNS: tuple[Column, ...] = (
    Column("age", "int64"),
    Column("workclass", "string"),
    Column("fnlwgt", "int64"),
    Column("education", "string"),
    Column("education_num", "int64"),
    Column("marital_status", "string"),
    Column("occupation", "string"),
    Column("relationship", "string"),
    Column("race", "string"),
    Column("sex", "string"),
    Column("capital_gain", "int64"),
    Column("capital_loss", "int64"),
    Column("hours_per_week", "int64"),
    Column("native_country", "string"),
    Column("income", "string"),
)

LABEL_COLUMN = "income"

# The 14 feature columns in file order, which is also the order of the
# serving signature's inputs.
FEATURE_COLUMNS: tuple[Column, ...] = tuple(
    column for column in COLUMNS if column.name != LABEL_COLUMN
)
FEATURE_NAMES: tuple[str, ...] = tuple(column.name for column in FEATURE_COLUMNS)
INT_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in FEATURE_COLUMNS if column.dtype == "int64"
)
STRING_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in FEATURE_COLUMNS if column.dtype == "string"
)

FIELD_SEPARATOR = ","
MISSING_VALUE = "?"
COMMENT_PREFIX = "|"

# Income label to class: 1 is the positive class ">50K".
LABELS: dict[str, int] = {"<=50K": 0, ">50K": 1}

_INTEGER = re.compile(r"-?[0-9]+")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class CensusFormatError(ValueError):
    """A line of an Adult file cannot be parsed.

    `path` and `line_number` are None when the error comes from `parse_line`
    on a line without a known location.
    """

    def __init__(self, problem: str, path: str | None = None,
                 line_number: int | None = None):
        self.problem = problem
        self.path = path
        self.line_number = line_number
        if path is not None and line_number is not None:
            message = f"{path}:{line_number}: {problem}"
        else:
            message = problem
        super().__init__(message)


class CensusData(NamedTuple):
    """Parsed rows of one Adult file, unpackable as (features, labels, line_numbers).

    `features` maps each name in FEATURE_NAMES to an array with one value per
    row: int64 for integer columns, object arrays of `str` for string
    columns. `labels` contains 0 (<=50K) or 1 (>50K) as int64, and
    `line_numbers` the 1-based physical line of each row in the file.
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    line_numbers: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])


def row_key(path: str | os.PathLike[str], line_number: int) -> str:
    """Return the key `<file name>:<line number>` that joins scores to rows."""
    return f"{os.path.basename(os.fspath(path))}:{line_number}"


def row_keys(path: str | os.PathLike[str], line_numbers: np.ndarray) -> list[str]:
    """Return the row keys of `line_numbers` from `load(path)`, in row order."""
    return [row_key(path, int(number)) for number in line_numbers]


def parse_line(line: str) -> dict[str, int | str] | None:
    """Parse one raw line into a dict of column name to value.

    Integer columns become int, string columns stay str with "?" kept as a
    category, and "income" becomes the class 0 or 1. Returns None for a
    blank line or a comment line starting with "|". A trailing "\\r\\n" or
    "\\n" is stripped. Raises CensusFormatError naming the column and the
    value when the line is malformed.
    """
    text = line.rstrip("\r\n")
    if not text.strip() or text.lstrip().startswith(COMMENT_PREFIX):
        return None

    fields = [field.strip() for field in text.split(FIELD_SEPARATOR)]
    if len(fields) != len(COLUMNS):
        raise CensusFormatError(
            f"expected {len(COLUMNS)} fields separated by ', ', found "
            f"{len(fields)}; the columns are {', '.join(c.name for c in COLUMNS)}"
        )

    row: dict[str, int | str] = {}
    for column, field in zip(COLUMNS, fields):
        if column.name == LABEL_COLUMN:
            row[column.name] = _parse_label(field)
        elif column.dtype == "int64":
            row[column.name] = _parse_int(column.name, field)
        else:
            if not field:
                raise CensusFormatError(
                    f"{column.name} is empty; a missing value is written as "
                    f"{MISSING_VALUE!r}"
                )
            row[column.name] = field
    return row


def _parse_int(name: str, field: str) -> int:
    if field == MISSING_VALUE:
        raise CensusFormatError(
            f"{name} is missing ({MISSING_VALUE!r}), but integer columns need a "
            "value for training and evaluation"
        )
    if not _INTEGER.fullmatch(field):
        raise CensusFormatError(f"{name} is not an integer: {field!r}")
    value = int(field)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise CensusFormatError(f"{name} is out of the int64 range: {field!r}")
    return value


def _parse_label(field: str) -> int:
    label = field[:-1] if field.endswith(".") else field
    if label not in LABELS:
        raise CensusFormatError(
            f"{LABEL_COLUMN} is {field!r}; expected one of "
            f"{', '.join(LABELS)} (a trailing '.' is allowed)"
        )
    return LABELS[label]


def load(path: str | os.PathLike[str]) -> CensusData:
    """Read an Adult file into column arrays, labels and line numbers.

    The file is split on "\\n" only, as the Java line source does, so a
    stray "\\r" inside a line is part of the line and not a line break.
    Raises CensusFormatError with file name, line number and problem for the
    first malformed line, and also when the file contains no rows.
    """
    path = os.fspath(path)
    columns: dict[str, list] = {name: [] for name in FEATURE_NAMES}
    labels: list[int] = []
    line_numbers: list[int] = []

    with open(path, "rb") as file:
        for line_number, raw in enumerate(file, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise CensusFormatError(
                    f"line is not valid UTF-8 ({error.reason} at byte {error.start})",
                    path, line_number,
                ) from None
            try:
                row = parse_line(text)
            except CensusFormatError as error:
                raise CensusFormatError(error.problem, path, line_number) from None
            if row is None:
                continue
            for name in FEATURE_NAMES:
                columns[name].append(row[name])
            labels.append(row[LABEL_COLUMN])
            line_numbers.append(line_number)

    if not labels:
        raise CensusFormatError(f"{path} contains no data rows")

    features = {
        column.name: _to_array(columns[column.name], column.dtype)
        for column in FEATURE_COLUMNS
    }
    logger.debug("Loaded %d rows from %s", len(labels), path)
    return CensusData(
        features=features,
        labels=np.asarray(labels, dtype=np.int64),
        line_numbers=np.asarray(line_numbers, dtype=np.int64),
    )


def _to_array(values: list, dtype: str) -> np.ndarray:
    if dtype == "int64":
        return np.asarray(values, dtype=np.int64)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
