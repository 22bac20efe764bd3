"""Schemathesis against models trained by forja's own trainers (slow): a classifier
with a fixed input, a U-Net whose free side lengths must be multiples of 2^depth, and
an anomaly autoencoder. Every operation of the OpenAPI document gets
``FORJA_FUZZ_EXAMPLES`` examples (500 by default); no response may be a 5xx.

    python -m pytest tests/unit/server/test_server_fuzz_trained.py -m slow -s

prints the requests sent and the statuses seen per operation. The fast fuzz
(test_server_fuzz.py) runs tiny stand-ins at 25 examples in the default suite.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forja_trainer.geo.synthetic import make_geotiff_dataset

from ._server_helpers import isolated_ultralytics, serve, train_stage

pytestmark = pytest.mark.slow

schemathesis.serializer.alias("image/tiff", "application/octet-stream")
EXAMPLES = int(os.environ.get("FORJA_FUZZ_EXAMPLES", "500"))
STATUSES: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def trained_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import torch

    root = tmp_path_factory.mktemp("fuzz-trained")
    torch.set_num_threads(1)
    with isolated_ultralytics():
        clf = train_stage(root, 0, "image-classifier", "shapes",
                     "generated://shapes?classes=3&per_class=12&size=16", "generated",
                     {"epochs": 1, "image_size": 16, "width": 8, "batch_size": 16})
        scenes = make_geotiff_dataset(root / "scenes", scenes=2, size=(96, 96))
        unet = train_stage(root, 1, "unet-segmentation", "unet", scenes.as_uri(), "geotiff",
                      {"epochs": 1, "patch": 32, "stride": 32, "batch_size": 16})
        anomaly = train_stage(root, 2, "autoencoder-anomaly", "anomaly",
                         "generated://geotiff-scenes?scenes=1&size=64", "generated",
                         {"epochs": 1, "patch": 32, "batch_size": 16})
    repo, client = serve([clf, unet, anomaly], root / "cache", name="trained")
    INPUT_SHAPES.update({n: list(m.concrete_input_shape()) for n, m in repo.models.items()})
    assert repo.models["unet"].side_multiple > 1, "the trained U-Net constrains its sides"
    with client:
        yield schemathesis.openapi.from_asgi("/openapi.json", client.app)
    print("\nfuzz of trained models: statuses per operation "
          f"({EXAMPLES} examples each, unet sides multiple of "
          f"{repo.models['unet'].side_multiple})")
    for op, counts in sorted(STATUSES.items()):
        print(f"  {op}: {sum(counts.values())} requests, {dict(sorted(counts.items()))}")


MODELS = ["shapes", "unet", "anomaly"]
INPUT_SHAPES: dict[str, list[int]] = {}
"""Each served model's per-sample input shape, filled once the models are loaded."""
VALUE = st.one_of(st.integers(-3, 300), st.floats(-1e6, 1e6, width=32), st.booleans())
# Sides the models take (16 for the classifier, multiples of 4 for the U-Net) and others.
SIDE = st.one_of(st.integers(1, 80), st.sampled_from([16, 32, 48, 64]))


def _png(size: tuple[int, int], bands: int) -> bytes:
    import io

    from PIL import Image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(bands, "RGB")  # PNG holds at most 4 bands
    buf = io.BytesIO()
    Image.new(mode, size, 90).save(buf, format="PNG")
    return buf.getvalue()


def _tiff(bands: int, h: int, w: int) -> bytes:
    import numpy as np
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=bands, dtype="float32",
                      crs="EPSG:32630", transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(np.random.default_rng(h * w).random((bands, h, w), dtype=np.float32))
        return bytes(mem.read())


def _nested(shape: list[int], fill: Any) -> Any:
    return [_nested(shape[1:], fill) for _ in range(shape[0])] if shape else fill


@st.composite
def aimed(draw: Any, operation: Any) -> Any:
    """A schema-generated case sent to a served model, often with a body of a plausible
    shape (random sides, bands, datatypes, overlaps): random bodies alone rarely get
    past validation to the models themselves."""
    case = draw(operation.as_strategy())
    name = draw(st.sampled_from(MODELS))
    if "model_name" in (case.path_parameters or {}):
        case.path_parameters = {**case.path_parameters, "model_name": name}
    if any(p.name == "model" for p in operation.query):
        case.query = {**(case.query or {}), "model": name}
    if case.method != "POST" or not draw(st.booleans()):
        return case
    path, bands = case.path, draw(st.sampled_from([1, 3, 4]))
    h, w = draw(SIDE), draw(SIDE)
    if name in INPUT_SHAPES and draw(st.booleans()):  # the model's own bands, often its sides
        c, mh, mw = INPUT_SHAPES[name][-3:]
        bands, h, w = c, draw(st.just(mh) | SIDE), draw(st.just(mw) | SIDE)
    if path.endswith("/infer"):
        n = draw(st.integers(1, 3))
        dtype = draw(st.sampled_from(["FP32", "FP32", "FP64", "INT64", "UINT8", "BOOL", "FP16"]))
        case.media_type = "application/json"
        case.body = {"inputs": [{"name": "input", "shape": [n, bands, h, w], "datatype": dtype,
                                 "data": [draw(VALUE)] * (n * bands * h * w)}]}
    elif path == "/predict/geotiff":
        case.media_type = "application/octet-stream"
        case.body = _tiff(draw(st.integers(1, 5)), draw(st.integers(1, 200)),
                          draw(st.integers(1, 200)))
        case.query = {**(case.query or {}),
                      "overlap": draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.8]))}
    elif path == "/predict/batch" and draw(st.booleans()):
        case.media_type = "multipart/form-data"
        sizes = draw(st.lists(st.tuples(SIDE, SIDE), min_size=1, max_size=4))
        case.body = {"files": [_png(size, bands) for size in sizes]}
    elif path == "/predict/batch":
        case.media_type = "application/json"
        shapes = draw(st.lists(st.just([bands, h, w]) | st.tuples(
            st.just(bands), SIDE, SIDE).map(list), min_size=1, max_size=3))
        case.body = {"tensors": [_nested(sh, draw(VALUE)) for sh in shapes]}
    elif draw(st.booleans()):
        case.media_type = "application/json"
        case.body = {"tensor": _nested([bands, h, w], draw(VALUE))}
    else:
        case.media_type = "image/png"
        case.body = _png((w, h), bands)
    return case


def test_no_request_to_a_trained_model_gets_a_5xx(trained_schema: Any) -> None:
    # The schema exists only once the models are trained, so the operations are
    # walked here rather than parametrized at collection (which would train on import).
    failures: list[str] = []
    operations = [op.ok() for op in trained_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=st.one_of(operation.as_strategy(), aimed(operation)))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            try:
                response = case.call()
            except Exception as exc:  # the app raised through the ASGI transport: a 500
                failures.append(f"{case.method} {case.formatted_path}: {exc!r} "
                                f"{str(case.body)[:200]} {case.query}")
                STATUSES[f"{case.method} {case.path}"][500] += 1
                return
            STATUSES[f"{case.method} {case.path}"][response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: "
                                f"{response.status_code} {response.text[:300]}")

        fuzz()
    assert not failures, "\n".join(failures[:20])
