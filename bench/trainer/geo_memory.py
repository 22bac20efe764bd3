"""Peak memory of lazy patch training and tiled inference vs loading a scene whole.

Usage: PYTHONPATH=operator:trainer_image python bench/trainer/geo_memory.py [--dir D] [--steps N]

Generates a 3000x4000x5 float32 GeoTIFF (240 MB of pixels) once, then runs each
mode in its own process and prints, per mode:
  * tracemalloc peak: numpy buffers (numpy reports its allocations to tracemalloc),
    measured from after imports and model construction;
  * ru_maxrss delta: the process's peak resident set minus its resident set
    after imports and setup (includes torch activations and GDAL's block cache).
Every mode runs with GDAL_CACHEMAX=16 (MB): GDAL's block cache otherwise grows to
5% of RAM and holds decoded blocks of whatever was read, whole scene included.
Target: lazy modes <= 10% of loading the scene whole.
"""

# Imports sit in the per-process functions: each mode measures its own process.
# ruff: noqa: PLC0415
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HEIGHT, WIDTH, BANDS = 3000, 4000, 5


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_mode(mode: str, scene: Path, steps: int) -> dict[str, float | str]:
    import numpy as np
    import rasterio
    import torch
    from torch.utils.data import DataLoader

    from forja_architectures.autoencoder import ConvAutoencoder, pixel_error
    from forja_trainer.geo import GeoPatchDataset, TileSpec, open_scene, predict_tiled

    torch.set_num_threads(2)
    model = ConvAutoencoder(BANDS, base_channels=8, depth=2, latent_channels=4)
    mean, std = [1.0] * BANDS, [0.3] * BANDS
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # Warm-up on dummy tensors of the real shapes: the first forward, backward and
    # optimizer step import modules and size allocator pools once per process; that
    # is not the data's memory, so it happens before the baseline is taken.
    if mode == "lazy_train":
        warm = torch.zeros(16, BANDS, 64, 64)
        warm_loss = torch.nn.functional.mse_loss(model(warm), warm)
        warm_loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        opt.zero_grad()
    elif mode == "tiled_inference":
        with torch.no_grad():
            model.eval()(torch.zeros(16, BANDS, 128, 128))
    base_rss = _current_rss_mb()
    tracemalloc.start()
    started = time.monotonic()
    detail = ""
    if mode == "whole":
        with rasterio.open(scene) as src:
            data = src.read()
        detail = f"array {data.nbytes / 2**20:.0f} MiB"
        float(np.asarray(data[:, ::97, ::89]).mean())
        del data
    elif mode == "lazy_train":
        ds = GeoPatchDataset([open_scene(scene)], patch=64, stride=32, mean=mean, std=std)
        loader = DataLoader(
            ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        for i, x in enumerate(loader):
            if i >= steps:
                break
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), x)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        detail = f"{len(ds)} patches indexed, {steps} steps of 16x5x64x64"
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
        detail = f"{res.tiles} tiles of 128 px, stride 64, whole scene"
    else:
        raise SystemExit(f"unknown mode {mode}")
    _, peak = tracemalloc.get_traced_memory()
    return {
        "mode": mode,
        "seconds": round(time.monotonic() - started, 1),
        "tracemalloc_peak_mib": round(peak / 2**20, 1),
        "rss_delta_mib": round(max(0.0, _rss_mb() - base_rss), 1),
        "detail": detail,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "forja-bench-geo")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--mode")
    args = parser.parse_args()
    scene = args.dir / "scene.tif"
    if args.mode:
        print(json.dumps(run_mode(args.mode, scene, args.steps)))
        return
    if not scene.exists():
        from forja_trainer.geo.synthetic import write_scene

        t = time.monotonic()
        write_scene(scene, height=HEIGHT, width=WIDTH, bands=BANDS, seed=0)
        print(
            f"generated {scene} ({HEIGHT}x{WIDTH}x{BANDS} float32) in {time.monotonic() - t:.0f} s"
        )
    results = {}
    for mode in ("whole", "lazy_train", "tiled_inference"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--dir",
                str(args.dir),
                "--steps",
                str(args.steps),
                "--mode",
                mode,
            ],
            check=True,
            env={**os.environ, "GDAL_CACHEMAX": "16"},
            capture_output=True,
            text=True,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[mode]))
    whole = results["whole"]
    for mode in ("lazy_train", "tiled_inference"):
        r = results[mode]
        numpy_pct = 100 * float(r["tracemalloc_peak_mib"]) / float(whole["tracemalloc_peak_mib"])
        rss_pct = 100 * float(r["rss_delta_mib"]) / float(whole["rss_delta_mib"])
        print(
            f"{mode}: tracemalloc {r['tracemalloc_peak_mib']} MiB = {numpy_pct:.1f}% of whole; "
            f"rss delta {r['rss_delta_mib']} MiB = {rss_pct:.1f}% of whole (target <= 10%)"
        )


if __name__ == "__main__":
    main()
