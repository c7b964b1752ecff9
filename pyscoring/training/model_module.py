"""Load a model module and check that it follows pyscoring's model contract.

A model module is given by reference: a dotted module name importable from
`sys.path` (`models.census_hashed_ctr`) or the path of a `.py` file. It
defines

- `MODEL_NAME`, a string written to the manifest,
- `ModelParams`, a dataclass with `to_json()` and the classmethod
  `from_json(text)`,
- `build_model(features, mode, params, labels=None)`, which adds the model
  to the current `tf.compat.v1` graph and returns an object with the
  tensors `logit` and `probability` (shape [-1]) and `loss` (a scalar, None
  in mode "predict"), such as `models.census_wide_deep.ModelOutputs`.

and optionally

- `prepare_params(params, setup)`, which returns `params` with the
  data-dependent fields filled from a `TrainingSetup`,
- `build_train_op(loss, params, learning_rate, global_step)`, which returns
  the training operation; without it pyscoring minimizes the loss with Adam
  at `learning_rate` over every trainable variable.

`features` maps every column of `pyscoring.census.FEATURE_COLUMNS` to a
rank-1 tensor (int64 or string) of raw values, and `mode` is one of
MODES. This module imports neither TensorFlow nor the model until a
function needs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import sys
from types import ModuleType
from typing import Any, Mapping

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "models.census_wide_deep"

MODE_TRAIN = "train"
MODE_EVAL = "eval"
MODE_PREDICT = "predict"
MODES = (MODE_TRAIN, MODE_EVAL, MODE_PREDICT)

# Output names of the serving signature, and the attributes of build_model's result.
PROBABILITY = "probability"
LOGIT = "logit"

# Modules loaded from a file are registered in sys.modules under this prefix
# plus the file's stem and a hash of its absolute path.
_FILE_MODULE_PREFIX = "pyscoring_model_file_"

_CONTRACT = (
    "a model module defines MODEL_NAME, a ModelParams dataclass with to_json() and "
    "from_json(), and build_model(features, mode, params, labels=None); see the "
    "README section 'Your own model'"
)


class ModelLoadError(ValueError):
    """A model module is not found, fails to import or does not follow the model contract."""


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """Facts about a training run that `prepare_params` may use.

    `train_features` maps each feature column to a numpy array of the
    training rows; it is None in stream mode, which has no training file.
    `num_ps` is 0 when training runs in one process.
    """

    train_features: Mapping[str, Any] | None
    num_workers: int
    num_ps: int


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded model module and the reference that loads it again.

    `reference` is the dotted module name, or the absolute path of the
    module's file when it was loaded from a file.
    """

    reference: str
    module: ModuleType

    @property
    def name(self) -> str:
        return self.module.MODEL_NAME

    @property
    def params_class(self) -> type:
        return self.module.ModelParams

    def default_params(self):
        """Return `ModelParams()` with every field at its default."""
        return self.params_class()

    def params_from_json(self, text: str):
        """Parse the output of `ModelParams.to_json()` back into a ModelParams."""
        return self.params_class.from_json(text)

    def params_with_overrides(self, overrides_json: str):
        """Return the default params with the fields of the JSON object `overrides_json` replaced.

        An empty string returns the defaults. Raises ModelLoadError naming the
        unknown fields, or the JSON error, when `overrides_json` is invalid.
        """
        if not overrides_json.strip():
            return self.default_params()
        try:
            overrides = json.loads(overrides_json)
        except json.JSONDecodeError as error:
            raise ModelLoadError(
                f"model params {overrides_json!r} are not valid JSON ({error}); pass a "
                'JSON object of ModelParams fields such as {"table_rows": 65536}'
            ) from None
        if not isinstance(overrides, dict):
            raise ModelLoadError(
                f"model params {overrides_json!r} are not a JSON object; pass one such "
                'as {"table_rows": 65536}'
            )
        known = {field.name for field in dataclasses.fields(self.params_class)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ModelLoadError(
                f"model params {overrides_json!r} set {', '.join(unknown)}, which "
                f"{self.reference}.ModelParams does not have; its fields are "
                f"{', '.join(sorted(known))}"
            )
        merged = json.loads(self.default_params().to_json())
        merged.update(overrides)
        return self.params_from_json(json.dumps(merged))

    def prepare_params(self, params, setup: TrainingSetup):
        """Return `params` completed by the module's `prepare_params`, or unchanged without one."""
        hook = getattr(self.module, "prepare_params", None)
        if hook is None:
            return params
        prepared = hook(params, setup)
        if not isinstance(prepared, self.params_class):
            raise ModelLoadError(
                f"{self.reference}.prepare_params returned {type(prepared).__name__}; "
                "it must return a ModelParams of the same module"
            )
        return prepared

    def build_model(self, features, mode: str, params, labels=None):
        """Call the module's `build_model` and check that the result has the output tensors."""
        outputs = self.module.build_model(features, mode, params, labels=labels)
        for attribute in (LOGIT, PROBABILITY, "loss"):
            if not hasattr(outputs, attribute):
                raise ModelLoadError(
                    f"{self.reference}.build_model returned {type(outputs).__name__} "
                    f"without the attribute {attribute!r}; return an object with logit, "
                    "probability and loss, such as models.census_wide_deep.ModelOutputs"
                )
        if mode != MODE_PREDICT and outputs.loss is None:
            raise ModelLoadError(
                f"{self.reference}.build_model returned no loss in mode {mode!r}; it must "
                "return the loss whenever labels are given"
            )
        return outputs

    def build_train_op(self, loss, params, learning_rate: float, global_step):
        """Return the module's training operation, or Adam over every trainable variable."""
        hook = getattr(self.module, "build_train_op", None)
        if hook is not None:
            return hook(loss, params, learning_rate, global_step)
        import tensorflow as tf

        return tf.compat.v1.train.AdamOptimizer(learning_rate).minimize(
            loss, global_step=global_step, name="train_op")


def resolve_reference(reference: str | os.PathLike[str] | None) -> str:
    """Return the reference that loads the same module from any working directory.

    An empty or None reference is DEFAULT_MODEL. A file path becomes
    absolute. A dotted module name is returned as given.
    """
    if reference is None:
        return DEFAULT_MODEL
    text = os.fspath(reference).strip()
    if not text:
        return DEFAULT_MODEL
    if _is_file_reference(text):
        return os.path.abspath(text)
    return text


def _is_file_reference(text: str) -> bool:
    return text.endswith(".py") or os.sep in text


def load_model(reference: str | os.PathLike[str] | None = None) -> Model:
    """Import the model module that `reference` names and check the contract.

    Raises ModelLoadError that names the reference and the fix when the
    module or file is not found, fails to import, or lacks a required name.
    """
    resolved = resolve_reference(reference)
    if _is_file_reference(resolved):
        module = _load_file(resolved)
    else:
        module = _import_name(resolved)
    _check_contract(resolved, module)
    return Model(reference=resolved, module=module)


def model_of_params(params) -> Model:
    """Return the model whose module defines the class of `params`."""
    module = sys.modules.get(type(params).__module__)
    if module is None:
        raise ModelLoadError(
            f"the module {type(params).__module__!r} of {type(params).__name__} is not "
            "loaded; load its model with pyscoring.training.model_module.load_model"
        )
    reference = module.__file__ if module.__name__.startswith(_FILE_MODULE_PREFIX) \
        else module.__name__
    _check_contract(reference, module)
    return Model(reference=reference, module=module)


def _import_name(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise ModelLoadError(
                f"model module {name!r} not found on the Python path (working directory "
                f"{os.getcwd()}); pass a dotted module name such as "
                f"{DEFAULT_MODEL!r} that imports from there, or the path of a .py file"
            ) from None
        raise ModelLoadError(
            f"model module {name!r} failed to import: {error}; install the missing "
            "module or fix the import"
        ) from error


def _load_file(path: str) -> ModuleType:
    """Import the model file `path` once per process under a name derived from its path."""
    if not os.path.isfile(path):
        raise ModelLoadError(
            f"model file {path} not found; pass the path of an existing .py file or a "
            f"dotted module name such as {DEFAULT_MODEL!r}"
        )

    stem = os.path.splitext(os.path.basename(path))[0]
    safe_stem = "".join(char if char.isalnum() else "_" for char in stem)
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    name = f"{_FILE_MODULE_PREFIX}{safe_stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"model file {path} cannot be loaded as a Python module; "
                             "pass a .py file")

    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, so dataclasses and pickling can find the module by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        del sys.modules[name]
        if isinstance(error, Exception):
            raise ModelLoadError(
                f"model file {path} failed to import: {type(error).__name__}: {error}; "
                "fix the file"
            ) from error
        raise
    logger.info("Loaded model file %s as module %s", path, name)
    return module


def _check_contract(reference: str, module: ModuleType) -> None:
    if not callable(getattr(module, "build_model", None)):
        raise ModelLoadError(
            f"model module {reference!r} has no build_model function; define "
            "build_model(features, mode, params, labels=None) returning logit, "
            f"probability and loss ({_CONTRACT})"
        )
    if not isinstance(getattr(module, "MODEL_NAME", None), str):
        raise ModelLoadError(
            f"model module {reference!r} has no MODEL_NAME string; define "
            f"MODEL_NAME = \"...\", the name written to the manifest ({_CONTRACT})"
        )
    params_class = getattr(module, "ModelParams", None)
    if not (isinstance(params_class, type) and dataclasses.is_dataclass(params_class)):
        raise ModelLoadError(
            f"model module {reference!r} has no ModelParams dataclass; define one with "
            f"the model's hyperparameters ({_CONTRACT})"
        )
    for method in ("to_json", "from_json"):
        if not callable(getattr(params_class, method, None)):
            raise ModelLoadError(
                f"{reference}.ModelParams has no {method} method; define to_json() "
                "returning a JSON string and the classmethod from_json(text) that "
                "parses it"
            )


def feature_placeholders() -> dict:
    """Create one placeholder of shape [None] per census feature column, named after it."""
    import tensorflow as tf

    from pyscoring import census

    dtypes = {"int64": tf.int64, "string": tf.string}
    return {
        column.name: tf.compat.v1.placeholder(dtypes[column.dtype], shape=[None],
                                              name=column.name)
        for column in census.FEATURE_COLUMNS
    }
