"""Peak memory of lazy patch training and tiled inference vs loading a scene whole.

Usage: PYTHONPATH=operator:trainer_image python bench/trainer/geo_memory.py [--dir D] [--steps N]

Generates a 3000x4000x5 float32 GeoTIFF (240 MB of pixels) once, then runs each
mode in its own process and prints, per mode:
  * peak RSS over idle: after imports, setup, a warm-up step on dummy tensors and
    GDAL's first open, the peak resident set is reset (``/proc/self/clear_refs``)
    and the idle RSS taken; the figure is the peak since minus that idle RSS. This
    run has no tracemalloc: its books of every allocation cost RSS themselves;
  * tracemalloc peak: numpy buffers (numpy reports its allocations to tracemalloc),
    from a second run of the mode under tracemalloc.
The ``*_model`` modes run the same steps on dummy tensors without reading any scene:
the model's own activations, gradients and optimizer state at that batch, the
floor under the lazy modes, which no data path can go below.
No mode sets GDAL_CACHEMAX, as no pod does: the trainer's geo code caps GDAL's block
cache itself (``FORJA_GDAL_CACHE_MB``, default 4). ``lazy_train`` draws patches as the
trainer's loop does, block by block (``EpochSampler`` with the dataset's
``sample_groups``); ``lazy_train_random`` draws them at random, for the time it costs
under the same cap. ``tiled_inference`` runs at the trainer's defaults (16 tiles a
batch, at most 4x64x64 input pixels: 1 tile of 128 px); ``inference_model`` is that
batch's floor, and ``inference_model_16`` the floor at 16 tiles of 128 px.
Target: lazy modes <= 10% of loading the scene whole.
"""

# Imports sit in the per-process functions: each mode measures its own process.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HEIGHT, WIDTH, BANDS = 3000, 4000, 5


def _peak_rss_mb() -> float:
    """VmHWM: the peak resident set since the last reset (or the process's start)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _warm_up(mode: str, model: Any, opt: Any) -> None:
    """The first forward, backward and optimizer step import modules and size allocator
    pools once per process; that is not the data's memory, so it happens before the
    baseline is taken (on dummy tensors of the real shapes)."""
    import importlib

    import torch
    from torch.utils.data import DataLoader

    # Modules the modes import after the baseline, and the DataLoader's first batch
    # (it imports its fetchers and collate on first use): not the data's memory.
    for name in ("forja_trainer.geo", "forja_trainer.loop", "forja_trainer.geo.gdalcache"):
        importlib.import_module(name)
    next(iter(DataLoader([torch.zeros(BANDS, 8, 8)] * 2, batch_size=2)))
    if mode in ("lazy_train", "lazy_train_random", "train_model"):
        warm = torch.zeros(16, BANDS, 64, 64)
        warm_loss = torch.nn.functional.mse_loss(model(warm), warm)
        warm_loss.backward()
        opt.step()
        opt.zero_grad()
    elif mode in ("tiled_inference", "inference_model", "inference_model_16"):
        with torch.no_grad():
            model.eval()(torch.zeros(_tiles_per_batch(mode), BANDS, 128, 128))


def _tiles_per_batch(mode: str) -> int:
    from forja_trainer.geo import TileSpec

    return 16 if mode == "inference_model_16" else TileSpec(128, 64, 16).tiles_per_batch


def _model_only(mode: str, model: Any, opt: Any, steps: int) -> str:
    """The lazy modes' model work on one dummy batch, no scene: their floor."""
    import torch

    from forja_architectures.autoencoder import pixel_error

    if mode == "train_model":
        batch = torch.rand(16, BANDS, 64, 64)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            loss.backward()
            opt.step()
        return f"{steps} steps of 16x5x64x64 on one dummy batch, no scene"
    model.eval()
    n = _tiles_per_batch(mode)
    batch = torch.rand(n, BANDS, 128, 128)
    with torch.no_grad():
        for _ in range(20):
            pixel_error(batch, model(batch))
    return f"20 batches of {n}x5x128x128 on one dummy batch, no scene"


def _lazy_train(mode: str, scene: Path, model: Any, opt: Any, steps: int) -> str:
    """``steps`` steps over patches drawn as the trainer's loop draws them (or at random)."""
    import torch
    from torch.utils.data import DataLoader

    from forja_trainer.geo import GeoPatchDataset, open_scene
    from forja_trainer.loop import EpochSampler

    mean, std = [1.0] * BANDS, [0.3] * BANDS
    ds = GeoPatchDataset([open_scene(scene)], patch=64, stride=32, mean=mean, std=std)
    groups = ds.sample_groups() if mode == "lazy_train" else None
    loader = DataLoader(ds, batch_size=16, sampler=EpochSampler(len(ds), 0, 0, groups=groups))
    for i, x in enumerate(loader):
        if i >= steps:
            break
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), x)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    order = "block by block" if groups is not None else "at random"
    return f"{len(ds)} patches indexed, {steps} steps of 16x5x64x64 drawn {order}"


def run_mode(mode: str, scene: Path, steps: int, trace: bool) -> dict[str, float | str]:
    import numpy as np
    import rasterio
    import torch

    from forja_architectures.autoencoder import ConvAutoencoder, pixel_error
    from forja_trainer.geo import TileSpec, predict_tiled
    from forja_trainer.geo.gdalcache import open_raster

    torch.set_num_threads(2)
    model = ConvAutoencoder(BANDS, base_channels=8, depth=2, latent_channels=4)
    mean, std = [1.0] * BANDS, [0.3] * BANDS
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _warm_up(mode, model, opt)
    with rasterio.open(scene) as src:  # GDAL's drivers and first open: once per process
        src.read(1, window=((0, 8), (0, 8)))
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    base_rss = _current_rss_mb()
    if trace:
        tracemalloc.start()
    started = time.monotonic()
    detail = ""
    if mode == "whole":
        # Through the trainer's capped GDAL cache, as the lazy modes read: the reference
        # is the scene's array, not the array plus a cache of it decoded again.
        with open_raster(scene) as src:
            data = src.read()
        detail = f"array {data.nbytes / 2**20:.0f} MiB"
        float(np.asarray(data[:, ::97, ::89]).mean())
        del data
    elif mode in ("lazy_train", "lazy_train_random"):
        detail = _lazy_train(mode, scene, model, opt, steps)
    elif mode in ("train_model", "inference_model", "inference_model_16"):
        detail = _model_only(mode, model, opt, steps)
    elif mode == "tiled_inference":
        model.eval()

        def predict(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                x = torch.from_numpy(batch)
                out: np.ndarray = pixel_error(x, model(x)).numpy()
                return out

        res = predict_tiled(
            scene,
            scene.with_name("heatmap.tif"),
            predict,
            spec=TileSpec(128, 64, 16),
            mean=mean,
            std=std,
            out_count=1,
        )
        detail = (f"{res.tiles} tiles of 128 px, stride 64, {_tiles_per_batch(mode)} a batch, "
                  f"whole scene")
    else:
        raise SystemExit(f"unknown mode {mode}")
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    return {
        "mode": mode,
        "seconds": round(time.monotonic() - started, 1),
        "tracemalloc_peak_mib": round(peak / 2**20, 1),
        "rss_delta_mib": round(max(0.0, _peak_rss_mb() - base_rss), 1),
        "detail": detail,
    }


def _child(args: argparse.Namespace, mode: str, trace: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--dir", str(args.dir), "--steps", str(args.steps),
         "--mode", mode, *(["--trace"] if trace else [])],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "forja-bench-geo")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--mode")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    scene = args.dir / "scene.tif"
    if args.mode:
        print(json.dumps(run_mode(args.mode, scene, args.steps, args.trace)))
        return
    if not scene.exists():
        from forja_trainer.geo.synthetic import write_scene

        t = time.monotonic()
        write_scene(scene, height=HEIGHT, width=WIDTH, bands=BANDS, seed=0)
        print(
            f"generated {scene} ({HEIGHT}x{WIDTH}x{BANDS} float32) in {time.monotonic() - t:.0f} s"
        )
    results = {}
    modes = ("whole", "lazy_train", "lazy_train_random", "train_model", "tiled_inference",
             "inference_model", "inference_model_16")
    for mode in modes:
        results[mode] = _child(args, mode, trace=False)
        results[mode]["tracemalloc_peak_mib"] = _child(args, mode, trace=True)[
            "tracemalloc_peak_mib"]
        print(json.dumps(results[mode]), flush=True)
    whole = results["whole"]
    for mode, floor in (("lazy_train", "train_model"), ("tiled_inference", "inference_model")):
        r, f = results[mode], results[floor]
        numpy_pct = 100 * float(r["tracemalloc_peak_mib"]) / float(whole["tracemalloc_peak_mib"])
        rss_pct = 100 * float(r["rss_delta_mib"]) / float(whole["rss_delta_mib"])
        data_pct = 100 * (float(r["rss_delta_mib"]) - float(f["rss_delta_mib"])) / float(
            whole["rss_delta_mib"])
        print(
            f"{mode}: tracemalloc {r['tracemalloc_peak_mib']} MiB = {numpy_pct:.1f}% of whole; "
            f"rss delta {r['rss_delta_mib']} MiB = {rss_pct:.1f}% of whole (target <= 10%); "
            f"the model alone ({floor}) {f['rss_delta_mib']} MiB, the data path "
            f"{data_pct:.1f}% of whole; {r['seconds']} s"
        )
    rnd, m16 = results["lazy_train_random"], results["inference_model_16"]
    print(
        f"lazy_train_random (patches at random, same cap): rss delta {rnd['rss_delta_mib']} MiB "
        f"= {100 * float(rnd['rss_delta_mib']) / float(whole['rss_delta_mib']):.1f}% of whole, "
        f"{rnd['seconds']} s; inference_model_16 (16 tiles of 128 px a batch): "
        f"{m16['rss_delta_mib']} MiB = "
        f"{100 * float(m16['rss_delta_mib']) / float(whole['rss_delta_mib']):.1f}% of whole"
    )


if __name__ == "__main__":
    main()
