"""The export formats' registry (search/artifacts/export.py): the one Registry type, names
importable the old way, and each format saying how it is logged to MLflow."""

from __future__ import annotations

import numpy as np
import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry
from prunetune.search.artifacts import model_registry
from prunetune.search.artifacts.export import (
    FORMATS,
    ExportFormat,
    ExportResult,
    OnnxFormat,
    StateDictFormat,
    TorchScriptFormat,
    format_names,
    get_format,
    register_format,
)


def test_formats_are_a_registry_by_name():
    assert isinstance(FORMATS, Registry)
    assert {"state_dict", "torchscript", "onnx"} <= set(format_names())
    assert isinstance(get_format("onnx"), OnnxFormat) and get_format("state_dict").name == "state_dict"


def test_an_unknown_format_names_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown export format 'onx' \(did you mean 'onnx'\?\); choose one of: .*torchscript"
    ):
        get_format("onx")


def test_a_taken_format_name_is_refused():
    with pytest.raises(ConfigError, match="export format 'onnx' is already registered"):
        register_format("onnx")(type("Other", (StateDictFormat,), {}))


class _Recorded(ExportFormat):
    """A plug-in format: a file holding nothing, loaded as the identity; it records how the
    model registry asked it to log itself."""

    logged: list = []

    def write(self, model, path, example, info):
        path.write_text("")

    def load(self, path):
        return (lambda x: x * 1.0), "loaded object"

    def check_structure(self, loaded, reference, example):
        pass

    def log_model(self, loaded, path, registered_name, signature, example):
        self.logged.append((loaded, path, registered_name, list(signature.inputs.to_dict()[0]["tensor-spec"]["shape"])))
        return "model info"


register_format("recorded")(_Recorded)


def test_the_model_registry_logs_a_plug_in_format_the_way_the_format_says(tmp_path):
    result = ExportResult(tmp_path / "m.bin", "recorded", "t1", 0.0, 1e-4, 2, {}, {})

    assert model_registry._log_model(result, "my-model", np.zeros((2, 3), dtype=np.float32)) == "model info"
    assert _Recorded.logged == [("loaded object", tmp_path / "m.bin", "my-model", [-1, 3])]


def test_built_in_formats_choose_their_own_mlflow_flavour():
    assert OnnxFormat.log_model is not ExportFormat.log_model  # mlflow.onnx
    assert StateDictFormat.log_model is not ExportFormat.log_model  # pt2, plus the export folder
    assert (StateDictFormat.mlflow_serialization, TorchScriptFormat.mlflow_serialization) == ("pt2", "pickle")


def test_the_cli_offers_exactly_the_built_in_formats():
    from prunetune.search.commands import export as command

    # The CLI lists them statically so `prunetune --help` imports no torch; they must not drift.
    built_in = {name for name in format_names() if FORMATS.get(name).__module__ == ExportFormat.__module__}
    assert set(command.FORMATS) == built_in == {"state_dict", "torch_export", "torchscript", "onnx"}
