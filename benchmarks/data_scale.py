"""Data sets of any size: one trial's memory and speed against the folder's size, side by side.

Writes a generated ImageFolder (JPEG files, 64-96 px, 10 classes, 80% train / 20% val) at each
size, then measures in separate processes, each one trial worker:

- peak memory of a trial streaming the folder (``data.mode: stream``): the proportional set
  size (PSS: pages shared between the trial and its forked DataLoader workers counted once) of
  the process tree, at every size (goal: the largest within 1.2x of the smallest);
- images per second of that trial's fine-tune against a bare torch DataLoader loop with the same
  workers, decoding and augmentation (goal >= 0.9x);
- two concurrent trials reading one node cache (``mode: memory``) against one: their total
  proportional memory (PSS, shared pages counted once) (goal < 1.3x);
- building the node cache against decoding on the fly (one streamed epoch), and a second search
  reusing it.

``--search`` also runs ``prunetune search`` on the largest folder (stream mode) to its frontier
and prints each trial's peak memory beside the folder's decoded size.

    python -m benchmarks.data_scale                       # 1,000 / 10,000 / 100,000 files
    python -m benchmarks.data_scale --sizes 1000 2000     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from statistics import median

import numpy as np

INPUT = 32  # the model's input size: photos are stored at 37 px (8/7 of it)
CLASSES = 10
SEARCH_INPUT = 96  # --search: stored at 110 px, so the decoded folder dwarfs a worker's memory


# --- the generated folder -------------------------------------------------------------------


def _write_image(job: tuple[str, int, int]) -> None:
    from PIL import Image

    path, index, label = job
    rng = np.random.default_rng(index)
    height, width = (int(v) for v in rng.integers(64, 97, 2))
    y, x = np.mgrid[0:height, 0:width] / 8.0
    angle = np.pi * label / CLASSES  # each class: stripes at its own angle, in random colours
    stripes = (np.sin(x * np.cos(angle) + y * np.sin(angle) + rng.uniform(0, 6)) > 0)[..., None]
    colours = rng.integers(0, 256, (2, 3))
    pixels = np.where(stripes, colours[0], colours[1]) + rng.normal(0, 20, (height, width, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=85)


def generated_folder(root: Path, count: int) -> Path:
    """``root/<count>`` holding ``count`` JPEG files (written once; reused by later runs)."""
    folder = root / str(count)
    done = folder / ".complete"
    if done.exists():
        return folder
    jobs = []
    for index in range(count):
        split = "val" if (index // CLASSES) % 5 == 0 else "train"
        label = index % CLASSES
        directory = folder / split / f"class{label}"
        directory.mkdir(parents=True, exist_ok=True)
        jobs.append((str(directory / f"{index:06d}.jpg"), index, label))
    with Pool(max(1, os.cpu_count() or 1)) as pool:
        pool.map(_write_image, jobs, chunksize=256)
    done.write_text("")
    return folder


# --- memory of a process tree, polled -------------------------------------------------------


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:
            pass
    return found


def _memory_kib(pid: int, field: str) -> int:
    """``field`` (``Rss`` or ``Pss``) of one process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cache_pss_kib(pid: int) -> int:
    """PSS of the node-cache files a process maps (``*.u8``): a page shared by N processes
    counts 1/N in each, so the sum over processes is the copies held, whatever N."""
    total, inside = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as handle:
            for line in handle:
                if "-" in line.split(" ", 1)[0]:  # a mapping's header line
                    inside = line.rstrip().endswith(".u8")
                elif inside and line.startswith("Pss:"):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def run_watched(commands: list[list[str]], cache_pss: list[float] | None = None) -> tuple[list[dict], float, float]:
    """Run ``commands`` at once; their JSON outputs, and the peak over time of their trees'
    summed RSS and PSS, in MiB (``cache_pss`` gets the peak PSS of mapped node-cache files)."""
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    peak_rss = peak_pss = peak_cache = 0
    while any(p.poll() is None for p in processes):
        pids = [pid for p in processes for pid in _tree(p.pid)]
        peak_rss = max(peak_rss, sum(_memory_kib(pid, "Rss") for pid in pids))
        peak_pss = max(peak_pss, sum(_memory_kib(pid, "Pss") for pid in pids))
        if cache_pss is not None:
            peak_cache = max(peak_cache, sum(_cache_pss_kib(pid) for pid in pids))
        time.sleep(0.05)
    if cache_pss is not None:
        cache_pss.append(peak_cache / 1024)
    outputs = []
    for process, command in zip(processes, commands):
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    return outputs, peak_rss / 1024, peak_pss / 1024


def _role(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.data_scale", "--role", *args]


# --- the roles: one trial worker, a bare loop, building the cache ---------------------------


def _model():
    from prunetune.trainables.models import build_model

    return build_model("resnet20", num_classes=CLASSES, input_size=INPUT, width=0.25)


def _train_timed(model, batches, steps: int, warmup: int = 5) -> float:
    """Images per second over ``steps`` SGD steps after ``warmup`` untimed ones."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    seen, start = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        x, y = next(batches)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y) if step >= warmup else 0
    return seen / (time.perf_counter() - start)


def role_trial(root: str, mode: str, steps: int, workers: int, cache: str) -> dict:
    """One trial worker: open the folder as a trial does, fine-tune, evaluate 500 val images."""
    import torch

    from prunetune.trainables.data.feed import DataLoad, open_trial_data
    from prunetune.trainables.train import evaluate

    torch.manual_seed(0)
    started = time.perf_counter()
    data = open_trial_data("imagefolder", INPUT, root, 0, (), DataLoad(mode, None, cache, workers), "cpu", 500)
    opened = time.perf_counter() - started
    rate = _train_timed(_model(), data.train_batches(64, seed=0), steps)
    accuracy = evaluate(_model().eval(), data.eval_batches("val"))[0]
    data.close()
    return {"images_per_s": rate, "open_s": opened, "mode": data.mode, "accuracy": accuracy}


def role_bare(root: str, steps: int, workers: int) -> dict:
    """A bare torch loop: ImageFolder, torchvision's transforms per image in DataLoader workers
    (decode, resize the shorter side, centre crop, then the same random resized crop and flip),
    shuffled, pinned, the same model and step."""
    import torch
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    from prunetune.trainables.data.augment import stored_size

    size = stored_size("photo", INPUT)
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.RandomResizedCrop(INPUT, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5] * 3, [0.25] * 3),
        ]
    )
    dataset = ImageFolder(str(Path(root) / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=64, shuffle=True, num_workers=workers, persistent_workers=workers > 0, drop_last=True
    )

    def endless():
        while True:
            yield from loader

    torch.manual_seed(0)
    return {"images_per_s": _train_timed(_model(), endless(), steps)}


def role_build(root: str, cache: str) -> dict:
    from prunetune.trainables.data.cache import node_cache

    started = time.perf_counter()
    node_cache("imagefolder", INPUT, root, 0, (), cache)
    return {"seconds": time.perf_counter() - started}


def role_epoch(root: str, workers: int) -> dict:
    """Decoding on the fly: one streamed pass over the training files."""
    from prunetune.trainables.data.feed import DataLoad, open_trial_data

    started = time.perf_counter()
    data = open_trial_data("imagefolder", INPUT, root, 0, (), DataLoad("stream", None, None, workers), "cpu")
    for _ in data.splits["train"].ordered(256, None):
        pass
    data.close()
    return {"seconds": time.perf_counter() - started}


# --- the report -----------------------------------------------------------------------------


def _decoded_mib(count: int, input_size: int = INPUT) -> float:
    from prunetune.trainables.data.feed import decoded_size

    return decoded_size("imagefolder", input_size, count) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--steps", type=int, default=60, help="timed fine-tune steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternated trial/bare runs per size (medians)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (the trial's and the bare loop's)")
    parser.add_argument("--folders", default=str(Path(tempfile.gettempdir()) / "prunetune-data-scale"))
    parser.add_argument("--out", default="data_scale.json")
    parser.add_argument("--search", action="store_true", help="also run prunetune search on the largest folder")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        role, *rest = args.role
        result = {
            "trial": lambda: role_trial(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4]),
            "bare": lambda: role_bare(rest[0], int(rest[1]), int(rest[2])),
            "build": lambda: role_build(rest[0], rest[1]),
            "epoch": lambda: role_epoch(rest[0], int(rest[1])),
        }[role]()
        print(json.dumps(result))
        return 0

    figures: dict = {"input_size": INPUT, "workers": args.workers, "steps": args.steps, "sizes": {}}
    root = Path(args.folders)
    print(f"generated folders under {root} (JPEG, 64-96 px, {CLASSES} classes); model resnet20 w0.25 at {INPUT} px")
    print(f"{'files':>8} {'decoded':>9} {'trial peak PSS':>15} {'trial img/s':>12} {'bare img/s':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as caches:
        for count in args.sizes:
            started = time.perf_counter()
            folder = generated_folder(root, count)
            made = time.perf_counter() - started
            steps, workers = str(args.steps), str(args.workers)
            trials, bares, peaks = [], [], []
            for _ in range(args.repeats):  # alternated, medians: a busy machine moves single figures a lot
                [trial], rss, pss = run_watched([_role("trial", str(folder), "stream", steps, workers, caches)])
                [bare], bare_rss, _ = run_watched([_role("bare", str(folder), steps, workers)])
                trials.append(trial["images_per_s"])
                bares.append(bare["images_per_s"])
                peaks.append((pss, rss))
            pss, rss = max(peaks)
            trial, bare = {"images_per_s": median(trials)}, {"images_per_s": median(bares)}
            ratio = median(t / b for t, b in zip(trials, bares))
            figures["sizes"][count] = {
                "decoded_mib": _decoded_mib(count),
                "trial_peak_rss_mib": rss,
                "trial_peak_pss_mib": pss,
                "trial_images_per_s": trial["images_per_s"],
                "bare_images_per_s": bare["images_per_s"],
                "bare_peak_rss_mib": bare_rss,
                "speed_ratio": ratio,
                "generated_s": made,
            }
            print(
                f"{count:>8,} {_decoded_mib(count):>7,.0f}Mi {pss:>13,.0f}Mi {trial['images_per_s']:>12,.0f} "
                f"{bare['images_per_s']:>11,.0f} {ratio:>5.2f}x",
                flush=True,
            )
        sizes = figures["sizes"]
        smallest, largest = sizes[min(sizes)], sizes[max(sizes)]
        growth = largest["trial_peak_pss_mib"] / smallest["trial_peak_pss_mib"]
        worst = min(s["speed_ratio"] for s in sizes.values())
        figures["memory_growth"] = growth
        print(
            f"memory, largest / smallest folder: {growth:.2f}x (goal <= 1.2x); "
            f"slowest speed ratio {worst:.2f}x (goal >= 0.9x)"
        )

        middle = sorted(sizes)[len(sizes) // 2]
        folder = str(root / str(middle))
        [build], _, _ = run_watched([_role("build", folder, caches)])
        [epoch], _, _ = run_watched([_role("epoch", folder, str(args.workers))])
        [reuse], _, _ = run_watched([_role("build", folder, caches)])
        largest_folder = str(root / str(max(sizes)))
        run_watched([_role("build", largest_folder, caches)])
        trial = _role("trial", largest_folder, "memory", str(args.steps), "0", caches)
        cache_one: list[float] = []
        cache_two: list[float] = []
        one, _, one_pss = run_watched([trial], cache_one)
        two, _, two_pss = run_watched([trial, trial], cache_two)
        figures["node_cache"] = {
            "files": middle,
            "build_s": build["seconds"],
            "streamed_epoch_s": epoch["seconds"],
            "reuse_s": reuse["seconds"],
            "shared_files": max(sizes),
            "cache_mib": _decoded_mib(max(sizes)),
            "one_trial_pss_mib": one_pss,
            "two_trials_pss_mib": two_pss,
            "two_over_one": two_pss / one_pss,
            "one_trial_cache_pss_mib": cache_one[0],
            "two_trials_cache_pss_mib": cache_two[0],
            "memory_images_per_s": one[0]["images_per_s"],
        }
        print(
            f"node cache, {middle:,} files: built in {build['seconds']:.1f} s against {epoch['seconds']:.1f} s for one "
            f"streamed epoch ({build['seconds'] / epoch['seconds']:.2f}x); a second search opens it in "
            f"{reuse['seconds']:.2f} s"
        )
        print(
            f"two trials on one node cache of {max(sizes):,} files ({_decoded_mib(max(sizes)):,.0f} MiB): "
            f"{two_pss:,.0f} MiB PSS against {one_pss:,.0f} MiB for one ({two_pss / one_pss:.2f}x, goal < 1.3x); "
            f"the cache's pages in them: {cache_two[0]:,.0f} MiB against {cache_one[0]:,.0f} MiB "
            f"({cache_two[0] / max(cache_one[0], 1e-9):.2f}x); "
            f"memory mode trains at {one[0]['images_per_s']:,.0f} img/s"
        )
    if args.search:
        figures["search"] = _search(root / str(max(args.sizes)), max(args.sizes))
    Path(args.out).write_text(json.dumps(figures, indent=1))
    print(f"figures: {args.out}")
    return 0


def _search(folder: Path, count: int) -> dict:
    """``prunetune search`` on the folder, streamed: its frontier and each trial's peak memory."""
    import yaml

    from prunetune.budgets import report as R

    with tempfile.TemporaryDirectory() as results:
        config = {
            "name": "scale",
            "storage_path": results,
            "model": {"name": "resnet20", "width": 0.25, "input_size": SEARCH_INPUT},
            "data": {"name": "imagefolder", "root": str(folder), "mode": "stream", "workers": 1},
            "base": {"steps": 60, "batch_size": 64},
            "finetune": {"steps": 20, "batch_size": 64},
            "evaluate": {"val_images": 500},
            "trials": 2,
            "concurrency": 1,
            "tracking": {"enabled": False},
        }
        path = Path(results) / "scale.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "prunetune", "search", str(path)], capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
        print(out.stdout[-1500:])
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"the search failed ({out.returncode})")
        peaks = []
        for result in Path(results, "scale").glob("trial_*/result.json"):
            last = json.loads(result.read_text().strip().splitlines()[-1])
            peaks.append(last.get(R.PEAK_MEMORY))
        frontier = json.loads(Path(results, "scale", "frontier.json").read_text())["frontier"]
    decoded = _decoded_mib(count, SEARCH_INPUT)
    as_floats = count * 3 * SEARCH_INPUT**2 * 4 / 2**20  # what each worker held before streaming
    print(
        f"search on {count:,} files at {SEARCH_INPUT} px ({decoded:,.0f} MiB decoded as uint8, {as_floats:,.0f} MiB "
        f"as float32): {len(frontier)} frontier points in {wall:.0f} s; trial workers' peak memory "
        f"{', '.join(f'{p:,.0f}' for p in peaks if p)} MiB"
    )
    return {
        "files": count,
        "decoded_mib": decoded,
        "wall_s": wall,
        "frontier": len(frontier),
        "trial_peak_rss_mb": peaks,
    }


if __name__ == "__main__":
    sys.exit(main())
