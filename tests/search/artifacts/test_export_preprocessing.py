"""Every export records the input preprocessing its model expects, and raw images put through
that record reach the trial's accuracy (raw pixels straight into the model do not)."""

from __future__ import annotations

import json

import pytest
import torch

from prunetune.search.artifacts.preprocess import Preprocessing
from prunetune.trainables import load_dataset


def raw_digits(split: str = "val"):
    """The digits loader's own images (8x8 gray floats in [0, 1]) before load_dataset's steps."""
    from prunetune.trainables.data.splits import _DATASETS  # the registered loader, as load_dataset calls it

    raw = _DATASETS.get("digits")(input_size=16, root=None, seed=0)
    return getattr(raw, f"{split}_images"), getattr(raw, f"{split}_labels")


def test_recorded_preprocessing_turns_raw_images_into_the_training_inputs():
    splits = load_dataset("digits", input_size=16)
    images, _ = raw_digits()
    pre = Preprocessing.from_json(json.loads(json.dumps(Preprocessing.of_splits(splits, 16).to_json())))
    # 8x8 gray -> 16x16 RGB, normalised; the training inputs were also rounded to uint8 once decoded
    assert torch.allclose(pre.apply(images), splits.val_x, atol=0.02)
    uint8 = (images * 255).round().to(torch.uint8)
    assert torch.allclose(pre.apply(uint8), splits.val_x, atol=0.05)  # uint8 is read as /255
    assert torch.allclose(pre.apply(images[:, 0]), splits.val_x, atol=0.02)  # (N, H, W) gray works too
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\].*divide by 255"):
        pre.apply(images * 255)  # float pixels on the uint8 scale: refused, not silently wrong
    with pytest.raises(ValueError, match="C 1 or 3"):
        pre.apply(torch.zeros(2, 2, 8, 8))


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def test_onnx_export_on_raw_images_through_its_metadata_reaches_the_trials_accuracy(cifar_exp, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    import onnxruntime

    from prunetune.search.artifacts.export import export_trial
    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.store.trials import find_trial, read_trials

    manifest = read_manifest(cifar_exp)
    trial = find_trial(read_trials(cifar_exp), "wide0001")
    out = export_trial(manifest, trial, "onnx", tmp_path / "m.onnx").path
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    pre = Preprocessing.from_json(props["preprocessing"])
    assert (
        pre.input_size == 8
        and len(pre.mean) == 3
        and json.loads(props["prunetune"])["preprocessing"]["std"] == list(pre.std)
    )

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    run = lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])  # noqa: E731
    images, labels = raw_digits()
    with_record = _accuracy(run(pre.apply(images)), labels)
    assert with_record == pytest.approx(trial.metrics["accuracy"], abs=1.5 / len(labels))
    raw_rgb = images.expand(-1, 3, -1, -1).contiguous()  # what a user without the record would feed
    assert _accuracy(run(raw_rgb), labels) < with_record - 0.2


@pytest.mark.parametrize(("fmt", "name"), [("torch_export", "m.pt2"), ("torchscript", "m.pt"), ("state_dict", "m")])
def test_every_format_carries_the_preprocessing(cifar_exp, tmp_path, fmt, name):
    from prunetune.search.artifacts.export import export_trial
    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.store.trials import find_trial, read_trials

    manifest = read_manifest(cifar_exp)
    trial = find_trial(read_trials(cifar_exp), "half0002")
    result = export_trial(manifest, trial, fmt, tmp_path / name)
    if fmt == "state_dict":
        recorded = json.loads((result.path / "preprocessing.json").read_text())
        assert json.loads((result.path / "export.json").read_text())["preprocessing"] == recorded
    elif fmt == "torch_export":
        extra = {"preprocessing.json": ""}
        program = torch.export.load(str(result.path), extra_files=extra)
        recorded = json.loads(extra["preprocessing.json"])
        images, labels = raw_digits()
        logits = program.module()(Preprocessing.from_json(recorded).apply(images))
        assert _accuracy(logits, labels) == pytest.approx(trial.metrics["accuracy"], abs=1.5 / len(labels))
    else:
        extra = {"preprocessing.json": ""}
        torch.jit.load(str(result.path), _extra_files=extra)
        recorded = json.loads(extra["preprocessing.json"])
    assert recorded == result.info["preprocessing"] and recorded["input_size"] == 8


def test_a_photo_folders_preprocessing_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    files = {}
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            pixels = rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)  # wide photos
            Image.fromarray(pixels).save(tmp_path / split / label / "a.png")
            files[(split, label)] = pixels
    splits = load_dataset("imagefolder", root=tmp_path, input_size=14)
    pre = Preprocessing.from_json(Preprocessing.of_splits(splits, 14).to_json())
    assert pre.resize_to == 16 and "shorter side" in " ".join(pre.to_json()["steps"])
    for x, y in ((splits.val_x, splits.val_y), (splits.test_x, splits.test_y)):  # half of val is held out as test
        raw = files[("val", ("cat", "dog")[int(y[0])])][None]  # (N, H, W, C) uint8, as PIL gives them
        assert torch.allclose(pre.apply(raw), x[:1], atol=0.05)
