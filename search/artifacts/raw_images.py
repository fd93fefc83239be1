"""An exported model as an MLflow pyfunc that takes raw images: the recorded preprocessing
(:class:`~prunetune.search.artifacts.preprocess.Preprocessing`), then the model.

``prunetune export --register`` logs it beside the format's own MLflow model, in the same run,
as ``raw_images`` (:func:`log_raw_image_model`); the registered version's tag ``raw_images``
holds its URI. ``mlflow.pyfunc.load_model(uri).predict(images)`` then answers logits for
uint8 or [0, 1] float images, (N, H, W, C), (N, C, H, W) or (N, H, W), of any size. Loading it
needs prunetune (and the format's runtime, e.g. onnxruntime) where it runs. Imports MLflow.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import torch

from prunetune.search.artifacts.preprocess import Preprocessing

NAME = "raw_images"  # the logged model's name in the run, and the version tag with its URI


class RawImageModel(mlflow.pyfunc.PythonModel):
    """``predict(images) -> logits (N, classes)``: preprocessing as recorded, then the exported
    artifact reloaded by its format (``model_config``: ``format``, ``preprocessing``)."""

    def load_context(self, context) -> None:
        from prunetune.search.artifacts.export import get_format

        self.preprocessing = Preprocessing.from_json(context.model_config["preprocessing"])
        self.runner, _ = get_format(context.model_config["format"]).load(Path(context.artifacts["model"]))

    def predict(self, context, model_input, params=None) -> np.ndarray:
        if isinstance(model_input, dict) and len(model_input) == 1:  # {"images": ...} from a REST call
            (model_input,) = model_input.values()
        images = model_input.to_numpy() if hasattr(model_input, "to_numpy") else np.asarray(model_input)
        with torch.inference_mode():
            logits = self.runner(self.preprocessing.apply(torch.from_numpy(np.ascontiguousarray(images))))
        return torch.as_tensor(logits).float().numpy()


def log_raw_image_model(result):
    """Log ``result`` (an ExportResult with recorded preprocessing) into the active run as the
    raw-images pyfunc; returns MLflow's ``ModelInfo``."""
    from prunetune.search.artifacts.export import requirements

    return mlflow.pyfunc.log_model(
        name=NAME,
        python_model=RawImageModel(),
        artifacts={"model": str(result.path)},
        model_config={"format": result.format, "preprocessing": result.info["preprocessing"]},
        pip_requirements=requirements("torch", "numpy"),
    )
