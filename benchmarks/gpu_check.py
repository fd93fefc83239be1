"""The trial on a GPU, end to end: one prepared script for a machine with a CUDA device and no
network, in under 5 minutes. Prints each figure and writes them all to a JSON file.

1. Images per second of a trial's fine-tune (``train_batches`` over ``TrialData`` resident on
   the device: uint8 batches indexed on the GPU, augmentation and normalisation there, bf16
   autocast, channels-last) against a bare torch loop on the same model and batch (float
   tensors already normalised on the device, index slices, the same autocast and memory format).
2. The same fine-tune streamed (``data.mode: stream``): pinned batches copied without blocking.
3. A 4-trial search at ``resources.gpu: 0.25`` on a private local Ray: all four trials share
   the one GPU at once; its wall time and how many trials ran on CUDA.
4. A CUDA latency budget: the dense model's latency on the device, and a search under
   ``latency <= 0.8 x dense`` (device cuda) that reaches its frontier.

    python -m benchmarks.gpu_check --out gpu_check.json

Data: Fashion-MNIST where Debian's dataset-fashion-mnist is installed, else generated shapes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _data_name() -> tuple[str, dict]:
    from prunetune.trainables.data.idx import FASHION_MNIST_ROOT

    if (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file():
        return "fashion_mnist", {}
    return "shapes", {"n_train": 20000, "n_val": 2000, "n_test": 2000}


def _model(num_classes: int):
    from prunetune.trainables.models import build_model
    from prunetune.trainables.train import to_device

    torch.manual_seed(0)
    return to_device(build_model("resnet20", num_classes=num_classes, input_size=32), torch.device("cuda"))


def _rate(model, batches, recipe, steps: int) -> float:
    from prunetune.trainables.train import make_optimizer, train_batches

    optimizer = make_optimizer(model, recipe)
    train_batches(model, batches, recipe, start=0, stop=20, optimizer=optimizer)  # warm-up: cuDNN picks kernels
    torch.cuda.synchronize()
    started = time.perf_counter()
    train_batches(model, batches, recipe, start=20, stop=20 + steps, optimizer=optimizer)
    torch.cuda.synchronize()
    return steps * recipe.batch_size / (time.perf_counter() - started)


def fine_tune_speed(name: str, options: dict, steps: int) -> dict:
    from prunetune.trainables.data.feed import DataLoad, open_trial_data
    from prunetune.trainables.train import Recipe

    recipe = Recipe(steps=steps + 20, batch_size=256, lr=0.05)
    arguments = (name, 32, None, 0, tuple(sorted(options.items())))
    data = open_trial_data(*arguments, DataLoad("memory"), "cuda")
    trial = _rate(_model(data.num_classes), data.train_batches(recipe.batch_size, seed=0), recipe, steps)

    x, y = data.sample(len(data))  # every training image, normalised, on the GPU: the bare loop's tensors
    x = x.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator(device="cuda").manual_seed(0)

    def bare():
        while True:
            idx = torch.randint(0, len(y), (recipe.batch_size,), device="cuda", generator=generator)
            yield x[idx], y[idx]

    plain = _rate(_model(data.num_classes), bare(), recipe, steps)
    streamed_data = open_trial_data(*arguments, DataLoad("stream", workers=4), "cuda")
    streamed = _rate(_model(data.num_classes), streamed_data.train_batches(recipe.batch_size, seed=0), recipe, steps)
    streamed_data.close()
    return {
        "trial_images_per_s": trial,
        "bare_images_per_s": plain,
        "ratio": trial / plain,
        "streamed_images_per_s": streamed,
        "device": torch.cuda.get_device_name(),
    }


def _search(name: str, options: dict, extra: dict, results: str) -> tuple[dict, float]:
    import yaml

    config = {
        "name": extra.pop("name"),
        "storage_path": results,
        "model": {"name": "resnet20", "input_size": 32},
        "data": {"name": name, "options": options},
        "base": {"steps": 300, "batch_size": 256, "lr": 0.1},
        "finetune": {"steps": 100, "batch_size": 256},
        "trials": 4,
        "concurrency": 4,
        "resources": {"cpu": 1, "gpu": 0.25},
        "tracking": {"enabled": False},
        **extra,
    }
    path = Path(results) / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "prunetune", "search", str(path)], capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(out.stdout[-1200:])
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"search {config['name']} failed ({out.returncode})")
    frontier = json.loads((Path(results) / config["name"] / "frontier.json").read_text())
    return frontier, wall


def fractional_search(name: str, options: dict) -> dict:
    with tempfile.TemporaryDirectory() as results:
        frontier, wall = _search(name, options, {"name": "quarter"}, results)
        finished = len(list(Path(results, "quarter").glob("trial_*/result.json")))
    return {"trials": finished, "wall_s": wall, "frontier_points": len(frontier["frontier"])}


def latency_budget(name: str, options: dict) -> dict:
    from prunetune.budgets import measure_costs
    from prunetune.budgets.names import get_cost

    model = _model(10).float().to(memory_format=torch.contiguous_format).eval()
    latency = get_cost("latency", device="cuda", batch_size=64, repeats=50)
    dense_ms = measure_costs(model, torch.randn(1, 3, 32, 32), {"latency": latency})["latency"]
    budget = [{"cost": "latency", "max": 0.8, "relative": True, "options": {"device": "cuda", "batch_size": 64}}]
    with tempfile.TemporaryDirectory() as results:
        frontier, wall = _search(name, options, {"name": "latency", "budgets": budget}, results)
    return {"dense_latency_ms": dense_ms, "frontier_points": len(frontier["frontier"]), "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--steps", type=int, default=200, help="timed fine-tune steps")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU (BENCHMARKS.md says what ran without one)", file=sys.stderr)
        return 2
    name, options = _data_name()
    figures: dict = {"data": name, "torch": torch.__version__}
    started = time.perf_counter()
    speed = fine_tune_speed(name, options, args.steps)
    figures["fine_tune"] = speed
    print(
        f"fine-tune on {speed['device']}: trial {speed['trial_images_per_s']:,.0f} img/s, bare loop "
        f"{speed['bare_images_per_s']:,.0f} img/s ({speed['ratio']:.2f}x); "
        f"streamed {speed['streamed_images_per_s']:,.0f} img/s"
    )
    figures["quarter_gpu_search"] = quarter = fractional_search(name, options)
    print(f"4 trials at gpu 0.25: {quarter['trials']} finished in {quarter['wall_s']:.0f} s")
    figures["latency_budget"] = latency = latency_budget(name, options)
    print(f"CUDA latency budget: dense {latency['dense_latency_ms']:.2f} ms; frontier of {latency['frontier_points']}")
    figures["total_s"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(figures, indent=1))
    print(f"figures: {args.out} ({figures['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
