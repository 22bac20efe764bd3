"""A 3000x4000x5 scene through the server's GeoTIFF path: seconds and peak RSS over idle.

usage: PYTHONPATH=operator:trainer_image:server_image:hack:tests \
    ~/.cache/forja/venv/bin/python bench/server/scene.py [--dir D] [--baseline TREE]

Generates a 3000x4000x5 float32 GeoTIFF (240 MB of pixels, a nodata corner) once,
and a small real segmentation model (the server tests' TinyUNet, exported to ONNX
and served by ONNX Runtime through the server's batcher, as a request is). Each
mode runs in a process of its own: the model is loaded and warmed up and GDAL has
opened a file once (as in a server that has answered a request), then the
peak resident set is reset (``/proc/self/clear_refs``) and the idle RSS taken, and
the figure is the peak during the request minus that idle RSS (with ``--numpy``,
each mode runs once more under tracemalloc for numpy's own peak):

* ``stream``: the scene on disk, as a body streamed to a temporary file or a scene
  named in the store lands, read and written window by window;
* ``pointwise``: ``stream`` with a pointwise function in the model's place, which
  leaves what the GeoTIFF path itself holds (the rest is the model runtime's);
* ``memory``: the scene as a body held in memory (what a body up to
  ``geotiff_memory_bytes`` takes), read and written window by window through
  rasterio's MemoryFile: the body and the map count;
* ``memory`` with ``--baseline TREE``: the same call against an older checkout's
  ``server_image`` (e.g. ``git archive 249b168`` unpacked), whose request path read
  the scene whole.
"""

# Imports sit in the per-process functions: each mode measures its own process
# (PLC0415 is off for bench/server in pyproject).
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
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH, BANDS = 3000, 4000, 5
TILE = 64
SCENE_MB = HEIGHT * WIDTH * BANDS * 4 / 2**20


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_scene(path: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=BANDS,
                       dtype="float32", crs="EPSG:32630", nodata=-9999.0,
                       transform=from_origin(500000, 4000000, 10, 10), tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        for top in range(0, HEIGHT, 250):
            y, x = np.mgrid[top : top + 250, 0:WIDTH].astype(np.float32)
            block = rng.random((BANDS, 250, WIDTH), dtype=np.float32) * 0.3
            block[0] += np.sin(x / 97.0) * np.cos(y / 131.0)
            if top < 500:
                block[:, :, :600] = -9999.0  # outside the swath
            dst.write(block, window=Window(0, top, WIDTH, 250))


def make_model(root: Path) -> dict[str, Any]:
    import torch

    from unit.server import _server_tiny_models as tm

    torch.manual_seed(4)
    stage = tm.write_artifact(
        root, name="unet", module=tm.TinyUNet(BANDS, 2), architecture=None, arch_config={},
        task="segmentation", input_shape=[None, BANDS, None, None], fmt="onnx",
        with_weights=False, preprocessing={"tile": TILE})
    return stage.model_dump(by_alias=True)


def run_mode(mode: str, scene: Path, stage: dict[str, Any], work: Path,
             trace: bool) -> dict[str, Any]:
    import asyncio

    import numpy as np

    from forja_api.serving import BatchingConfig, ServingConfig, StageArtifact
    from forja_server import geotiff
    from forja_server.repository import ModelRepository
    from forja_server.service import infer_tensor

    cfg = ServingConfig(name="unet", stages=[StageArtifact.model_validate(stage)],
                        batching=BatchingConfig(max_batch_size=32, max_latency_ms=2))
    repo = ModelRepository(cfg, work / "cache")
    repo.load_all()
    m = repo.get("unet")

    async def main() -> dict[str, Any]:
        for b in repo.batchers.values():
            b.start()

        async def run(tiles: np.ndarray) -> np.ndarray:
            if mode == "pointwise":  # no model: what the GeoTIFF path itself holds
                return tiles[:, :2] - tiles[:, 2:4]
            outputs, _ = await infer_tensor(repo, "unet", tiles)
            return next(iter(outputs.values()))

        for n in (32, 31, 1):  # warm at the batch sizes a scene's tile rows make
            await run(np.zeros((n, BANDS, TILE, TILE), np.float32))
        import rasterio  # GDAL's drivers and first-open state: once per process, not per scene

        with rasterio.open(scene) as src:
            src.read(1, window=((0, 8), (0, 8)))
        kw: dict[str, Any] = {"task": m.task, "bands": BANDS, "tile": TILE, "overlap": 0.5,
                              "preprocessing": m.preprocessing, "threshold": None, "run": run}
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
        idle = _rss_mb()
        if trace:  # numpy reports its buffers; tracemalloc's own books cost RSS, so apart
            tracemalloc.start()
        started = time.perf_counter()
        if mode in ("stream", "pointwise"):
            result = await geotiff.predict_geotiff(scene, out_path=work / "map.tif", **kw)
            size = (work / "map.tif").stat().st_size
        else:
            result = await geotiff.predict_geotiff(scene.read_bytes(), **kw)
            size = len(result.data)
        seconds = time.perf_counter() - started
        peak = _peak_mb() - idle
        traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else float("nan")
        tracemalloc.stop()
        await repo.close()
        return {"seconds": round(seconds, 2), "idle_mb": round(idle, 1),
                "peak_over_idle_mb": round(peak, 1), "map_bytes": size,
                "numpy_peak_mb": round(traced, 1),
                "share_of_scene": round(peak / SCENE_MB, 3),
                "nodata_share": result.tags.get("nodata_share")}

    return asyncio.run(main())


def _child(mode: str, scene: Path, stage_json: Path, tree: Path,
           trace: bool = False) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               PYTHONPATH=os.pathsep.join(str(tree / p) for p in
                                          ("operator", "trainer_image", "server_image")))
    with tempfile.TemporaryDirectory(prefix="forja-scene-bench-") as work:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--scene", str(scene),
             "--stage", str(stage_json), "--work", work, *(["--trace"] if trace else [])],
            env=env, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "forja-scene-bench")
    p.add_argument("--baseline", type=Path, help="an older tree: its whole-scene path, too")
    p.add_argument("--modes", default="stream,pointwise,memory")
    p.add_argument("--numpy", action="store_true",
                   help="run each mode again under tracemalloc for numpy's peak")
    p.add_argument("--child")
    p.add_argument("--trace", action="store_true")
    p.add_argument("--scene", type=Path)
    p.add_argument("--stage", type=Path)
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    if args.child:
        stage = json.loads(args.stage.read_text())
        print(json.dumps(run_mode(args.child, args.scene, stage, args.work, args.trace)))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    scene = args.dir / "scene-3000x4000x5.tif"
    if not scene.exists():
        make_scene(scene)
    stage_json = args.dir / "stage.json"
    stage_json.write_text(json.dumps(make_model(args.dir / "model")))
    runs = [(mode, mode, ROOT) for mode in args.modes.split(",")]
    if args.baseline:
        runs.append(("whole (baseline)", "memory", args.baseline))
    print(f"scene {HEIGHT}x{WIDTH}x{BANDS} float32 ({SCENE_MB:.0f} MiB of pixels), "
          f"tile {TILE}, overlap 0.5, TinyUNet on ONNX Runtime")
    print(f"{'mode':<18}{'seconds':>9}{'idle MiB':>10}{'peak over idle MiB':>20}"
          f"{'of scene':>10}{'numpy peak MiB':>16}")
    for label, mode, tree in runs:
        r = _child(mode, scene, stage_json, tree)
        if args.numpy:
            r["numpy_peak_mb"] = _child(mode, scene, stage_json, tree, True)["numpy_peak_mb"]
        print(f"{label:<18}{r['seconds']:>9.2f}{r['idle_mb']:>10.0f}"
              f"{r['peak_over_idle_mb']:>20.1f}{r['share_of_scene']:>10.1%}"
              f"{r['numpy_peak_mb']:>16.1f}", flush=True)


if __name__ == "__main__":
    main()
