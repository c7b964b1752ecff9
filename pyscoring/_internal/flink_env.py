"""Locate the Flink distribution and pyscoring's jars before PyFlink starts its JVM."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# `make install` assembles this folder: the PyFlink wheel's lib/ plus the scorer
# jar, TensorFlow Java and the Prometheus client, all loaded parent-first.
DEFAULT_FLINK_LIB_DIR = PROJECT_ROOT / "build" / "flink-lib"


class FlinkSetupError(RuntimeError):
    """The Flink lib folder with pyscoring's jars is missing."""


def flink_home() -> Path:
    """The PyFlink wheel's folder, which contains Flink's bin/, conf/, lib/ and opt/."""
    import pyflink  # stdlib-only import; starts no JVM

    return Path(pyflink.__file__).resolve().parent


def flink_lib_dir() -> Path:
    return Path(os.environ.get("PYSCORING_FLINK_LIB_DIR", DEFAULT_FLINK_LIB_DIR))


def prepare_environment() -> Path:
    """Point PyFlink's gateway at the assembled lib folder; returns it.

    PyFlink builds the JVM classpath from FLINK_LIB_DIR, but only keeps a
    caller's value when FLINK_HOME is set too, so both are set here. Call this
    before the first PyFlink environment is created.
    """
    lib_dir = flink_lib_dir()
    jars = sorted(lib_dir.glob("pyscoring-jvm-*.jar"))
    if not jars:
        raise FlinkSetupError(
            f"no pyscoring-jvm jar in {lib_dir}; run `make install` in {PROJECT_ROOT} "
            "or set PYSCORING_FLINK_LIB_DIR to a folder holding Flink's lib jars "
            "and pyscoring's jars"
        )
    home = flink_home()
    os.environ["FLINK_HOME"] = str(home)
    os.environ["FLINK_LIB_DIR"] = str(lib_dir)
    os.environ.setdefault("FLINK_PLUGINS_DIR", str(home / "plugins"))
    os.environ.setdefault("FLINK_OPT_DIR", str(home / "opt"))
    return lib_dir
