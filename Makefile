# One entry point for both builds. Every target installs what it needs;
# stamp files make a second run fast when nothing changed.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
JAR := $(BUILD)/jvm/pyscoring-jvm-0.1.0.jar
FLINK_LIB := $(BUILD)/flink-lib
JAVA_SOURCES := $(shell find jvm/src/main -type f 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: install test test-all test-java demo bench bench-ps docs clean

install: $(VENV)/.installed $(FLINK_LIB)/.assembled

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The scorer jar and its runtime dependencies (TensorFlow Java, Prometheus client).
$(JAR): pom.xml $(JAVA_SOURCES)
	mvn -q -B -Dbuild.dir=$(CURDIR)/$(BUILD)/jvm -Dmaven.test.skip=true package \
	    dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(CURDIR)/$(BUILD)/jvm/dependencies
	touch $@

# Flink's lib folder plus pyscoring's jars: everything here loads parent-first in
# the task managers, which TensorFlow's native library needs (it cannot be loaded
# by a second classloader of the same JVM). flink-python from the wheel's opt/
# is here too, because a standalone cluster runs PyFlink's Python operators only
# with it on the task managers' classpath.
$(FLINK_LIB)/.assembled: $(VENV)/.installed $(JAR)
	rm -rf $(FLINK_LIB) && mkdir -p $(FLINK_LIB)
	cp $$($(PY) -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')/lib/*.jar $(FLINK_LIB)/
	cp $(JAR) $(BUILD)/jvm/dependencies/*.jar $(FLINK_LIB)/
	cp $$($(PY) -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')/opt/flink-python-*.jar $(FLINK_LIB)/
	touch $@

test-java: $(VENV)/.installed
	mvn -q -B -Dbuild.dir=$(CURDIR)/$(BUILD)/jvm-test test

test: install test-java
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

test-all: install test-java
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m pyscoring.demo

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.run

# The PS scoring path against the JVM path on a 2^22 x 16 hashed model; about 11 min.
bench-ps: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.ps_path

docs: $(VENV)/.installed
	$(PY) -m pyscoring.config > docs/configuration.md

clean:
	rm -rf $(BUILD) target
