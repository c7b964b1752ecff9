"""Input files of the benchmarks: census rows and MLP rows, in folders of hard links.

A folder contains one chunk file and further hard links to it, so a few
million rows cost the disk space of one chunk. The `pyscoring-lines`
source reads every file of a folder, one split per file, so parallelism 2
divides the links between its two readers.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from pyscoring import census

ROOT = Path(__file__).resolve().parents[1]
ADULT_TEST = ROOT / "data" / "adult" / "adult.test"

MLP_COLUMNS = tuple(f"f{index}" for index in range(8))
MLP_CHUNK_ROWS = 50_000


def census_chunk(path: Path) -> int:
    """Write the rows of adult.test without its comment and blank lines; return the row count."""
    rows = 0
    with open(ADULT_TEST, encoding="utf-8", newline="") as source, \
            open(path, "w", encoding="utf-8", newline="") as target:
        for line in source:
            text = line.rstrip("\r\n")
            if not text.strip() or text.startswith(census.COMMENT_PREFIX):
                continue
            target.write(text + "\n")
            rows += 1
    return rows


def mlp_chunk(path: Path, rows: int = MLP_CHUNK_ROWS, seed: int = 11) -> int:
    """Write `rows` lines of eight comma-separated floats from a fixed seed."""
    generator = random.Random(seed)
    with open(path, "w", encoding="utf-8") as target:
        for _ in range(rows):
            target.write(",".join(f"{generator.gauss(0.0, 1.0):.5f}" for _ in MLP_COLUMNS) + "\n")
    return rows


def linked_folder(chunk: Path, chunk_rows: int, rows: int, folder: Path) -> int:
    """Fill `folder` with hard links to `chunk` until it contains at least `rows` rows.

    Returns the row count of the folder. An existing folder is replaced.
    """
    if folder.exists():
        for entry in folder.iterdir():
            entry.unlink()
    else:
        folder.mkdir(parents=True)
    links = max(1, -(-rows // chunk_rows))
    for index in range(links):
        os.link(chunk, folder / f"part-{index:05d}.csv")
    return links * chunk_rows
