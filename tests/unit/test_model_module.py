"""Tests of loading model modules by name and by file, and of the manifest's model section."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from pyscoring import manifest
from pyscoring.config import Config, ConfigError
from pyscoring.training import model_module
from pyscoring.training.model_module import ModelLoadError, TrainingSetup, load_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HASHED_FILE = os.path.join(REPO_ROOT, "models", "census_hashed_ctr.py")

# A complete model file outside the models package: logistic regression over
# one hashed column.
TINY_MODEL = '''
import dataclasses, json
import tensorflow as tf

MODEL_NAME = "tiny"

@dataclasses.dataclass(frozen=True)
class ModelParams:
    buckets: int = 8

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

def build_model(features, mode, params, labels=None):
    raise NotImplementedError
'''


def write_module(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_default_reference_is_census_wide_deep():
    assert model_module.resolve_reference(None) == "models.census_wide_deep"
    assert model_module.resolve_reference("") == "models.census_wide_deep"
    assert model_module.resolve_reference("  ") == "models.census_wide_deep"


def test_load_by_module_name():
    model = load_model("models.census_hashed_ctr")

    assert model.name == "census_hashed_ctr"
    assert model.reference == "models.census_hashed_ctr"
    assert model.module.__name__ == "models.census_hashed_ctr"


def test_load_by_relative_file_path(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    model = load_model(os.path.join("models", "census_hashed_ctr.py"))

    assert model.name == "census_hashed_ctr"
    assert model.reference == HASHED_FILE
    assert model.module.__file__ == HASHED_FILE


def test_load_file_twice_returns_same_module(tmp_path):
    path = write_module(tmp_path, "tiny_model.py", TINY_MODEL)

    first = load_model(str(path))
    second = load_model(str(path))

    assert first.module is second.module
    assert first.params_class is second.params_class


def test_model_of_params_finds_file_module(tmp_path):
    path = write_module(tmp_path, "tiny_model.py", TINY_MODEL)
    model = load_model(str(path))

    found = model_module.model_of_params(model.default_params())

    assert found.module is model.module
    assert found.reference == str(path)


def test_missing_module_names_value_and_fix():
    with pytest.raises(ModelLoadError) as caught:
        load_model("no_such_package.no_such_model")

    message = str(caught.value)
    assert "'no_such_package.no_such_model' not found" in message
    assert "dotted module name" in message
    assert ".py file" in message


def test_missing_file_names_path_and_fix(tmp_path):
    path = tmp_path / "absent.py"
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(path))

    message = str(caught.value)
    assert f"model file {path} not found" in message
    assert "existing .py file" in message


def test_missing_dependency_is_not_reported_as_missing_module(tmp_path):
    path = write_module(tmp_path, "broken_import.py", "import no_such_dependency_xyz\n")
    with pytest.raises(ModelLoadError, match="failed to import.*no_such_dependency_xyz"):
        load_model(str(path))


def test_missing_build_model_names_module_and_fix(tmp_path):
    text = TINY_MODEL.replace("def build_model(", "def build(")
    path = write_module(tmp_path, "no_build.py", text)
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(path))

    message = str(caught.value)
    assert str(path) in message
    assert "has no build_model function" in message
    assert "build_model(features, mode, params, labels=None)" in message


def test_missing_build_model_in_named_module():
    with pytest.raises(ModelLoadError, match="'pyscoring.census' has no build_model"):
        load_model("pyscoring.census")


def test_missing_params_class_is_rejected(tmp_path):
    text = TINY_MODEL.replace("class ModelParams:", "class Params:")
    path = write_module(tmp_path, "no_params.py", text)
    with pytest.raises(ModelLoadError, match="has no ModelParams dataclass"):
        load_model(str(path))


def test_missing_model_name_is_rejected(tmp_path):
    text = TINY_MODEL.replace('MODEL_NAME = "tiny"', "")
    path = write_module(tmp_path, "no_name.py", text)
    with pytest.raises(ModelLoadError, match="has no MODEL_NAME string"):
        load_model(str(path))


def test_params_overrides_merge_with_defaults():
    model = load_model("models.census_hashed_ctr")

    params = model.params_with_overrides('{"table_rows": 1024, "hidden_units": [8, 4]}')

    assert params.table_rows == 1024
    assert params.hidden_units == (8, 4)
    assert params.embedding_dim == model.default_params().embedding_dim


def test_params_overrides_reject_unknown_field():
    model = load_model("models.census_hashed_ctr")
    with pytest.raises(ModelLoadError) as caught:
        model.params_with_overrides('{"rows": 1024}')

    assert "rows" in str(caught.value)
    assert "table_rows" in str(caught.value)


def test_params_overrides_reject_invalid_json():
    model = load_model("models.census_hashed_ctr")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        model.params_with_overrides("table_rows=1024")


def test_hashed_params_json_round_trip():
    model = load_model("models.census_hashed_ctr")
    params = model.params_with_overrides('{"table_rows": 2048, "num_shards": 2}')

    assert model.params_from_json(params.to_json()) == params


def test_hashed_prepare_params_sets_shards_from_ps():
    model = load_model("models.census_hashed_ctr")
    params = model.default_params()

    with_ps = model.prepare_params(params, TrainingSetup(None, num_workers=2, num_ps=3))
    without_ps = model.prepare_params(params, TrainingSetup(None, num_workers=1, num_ps=0))

    assert with_ps.num_shards == 3
    assert without_ps.num_shards == 1


def test_census_prepare_params_needs_data_or_stats():
    model = load_model("models.census_wide_deep")
    with pytest.raises(ValueError, match="numeric_stats is missing"):
        model.prepare_params(model.default_params(), TrainingSetup(None, 1, 1))


def test_resolve_model_rejects_params_of_other_module(tmp_path):
    from pyscoring.training import local

    path = write_module(tmp_path, "tiny_model.py", TINY_MODEL)
    hashed = load_model("models.census_hashed_ctr").default_params()
    with pytest.raises(ConfigError) as caught:
        local.resolve_model(Config({"train.model": str(path)}), hashed)

    assert f"train.model is {str(path)!r}" in str(caught.value)
    assert "'models.census_hashed_ctr'" in str(caught.value)


def test_resolve_model_uses_params_module_with_default_key():
    from pyscoring.training import local

    hashed = load_model("models.census_hashed_ctr").default_params()

    assert local.resolve_model(Config(), hashed).name == "census_hashed_ctr"


def test_resolve_model_rejects_params_with_params_key():
    from pyscoring.training import local

    hashed = load_model("models.census_hashed_ctr").default_params()
    config = Config({"train.model-params": '{"table_rows": 64}'})
    with pytest.raises(ConfigError, match="train.model-params is set"):
        local.resolve_model(config, hashed)


def test_cli_train_reports_missing_model(tmp_path, capsys):
    from pyscoring import cli

    code = cli.main(["train", "--export-dir", str(tmp_path / "exports"),
                     "--model", "no_such_model_module_xyz"])

    assert code == 2
    error = capsys.readouterr().err
    assert "'no_such_model_module_xyz' not found" in error
    assert not (tmp_path / "exports").exists()


def manifest_with(model_section):
    content = {
        "format_version": manifest.FORMAT_VERSION,
        "model_name": "census_hashed_ctr",
        "version": 1,
        "created_at": "2026-12-04T20:15:00Z",
        "tensorflow_version": "2.18.0",
        "signature": {"key": "serving_default", "inputs": [], "outputs": []},
        "feature_mapping": {},
        "variables": {"bytes": 1, "partitioned": False, "ps_shards": 1,
                      "partitioned_variables": []},
        "training": {"global_step": 1, "workers": 1, "ps": 0, "metrics": {}},
    }
    if model_section is not None:
        content["model"] = model_section
    return content


def write_version(tmp_path, content):
    folder = tmp_path / "1"
    folder.mkdir()
    (folder / manifest.MANIFEST_FILE).write_text(json.dumps(content))
    return folder


def test_manifest_without_model_section_reads(tmp_path):
    folder = write_version(tmp_path, manifest_with(None))

    read = manifest.read_manifest(folder)

    assert manifest.model_reference(read) is None


def test_manifest_model_reference(tmp_path):
    section = {"module": "models.census_hashed_ctr", "params": {"table_rows": 64}}
    folder = write_version(tmp_path, manifest_with(section))

    module, params_json = manifest.model_reference(manifest.read_manifest(folder))

    assert module == "models.census_hashed_ctr"
    assert json.loads(params_json) == {"table_rows": 64}


def test_manifest_rejects_malformed_model_section(tmp_path):
    folder = write_version(tmp_path, manifest_with({"module": "models.x", "params": "{}"}))
    with pytest.raises(manifest.ManifestError, match="model.params must be a JSON object"):
        manifest.read_manifest(folder)


def fake_checkpoint(folder, model_json):
    """Write the files that make `folder` look like a checkpoint folder of training."""
    folder.mkdir()
    (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1"\n')
    (folder / "model.ckpt-1.index").write_bytes(b"")
    (folder / "model_params.json").write_text("{}")
    if model_json is not None:
        (folder / "model.json").write_text(json.dumps(model_json))
    return folder


@pytest.mark.parametrize("model_json", [
    {"model_name": "census_wide_deep", "module": "models.census_wide_deep"},
    None,
], ids=["recorded", "legacy-folder"])
def test_resume_rejects_checkpoint_of_other_model(tmp_path, model_json):
    from pyscoring.training import local

    folder = fake_checkpoint(tmp_path / "checkpoints", model_json)
    hashed = load_model("models.census_hashed_ctr")
    with pytest.raises(ValueError) as caught:
        local.resolve_model_params(None, None, str(folder), model=hashed)

    assert "checkpoint of the model 'census_wide_deep'" in str(caught.value)
    assert "pass an empty checkpoint folder" in str(caught.value)
