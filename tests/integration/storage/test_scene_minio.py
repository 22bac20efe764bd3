"""A GeoTIFF scene named in the cluster's MinIO is served window by window: the map
equals the one the same scene gives sent as a body, and a missing key is a 400."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from fixtures.cluster import Cluster
from forja_server.limits import RequestLimits
from unit.server import _server_tiny_models as tm
from unit.server._server_helpers import serve
from unit.server.test_server_scenes import TILE, _read, _scene, _segmenter, _write_scene

pytestmark = [pytest.mark.cluster]


def test_a_scene_in_minio_gives_the_map_of_its_body(
        cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORJA_S3_ENDPOINT", cluster.s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", cluster.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", cluster.s3_secret_key)
    body = _write_scene(tmp_path / "scene.tif", _scene(300, 260)).read_bytes()
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint,
                      aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key)
    key = f"scene-tests/{uuid.uuid4().hex[:8]}/scene.tif"
    s3.put_object(Bucket=cluster.bucket, Key=key, Body=body)
    seg = tm.write_artifact(
        tmp_path / "artifacts", name="seg5", module=_segmenter(),
        architecture="tiny-segmenter", arch_config={"in_channels": 5, "num_classes": 2},
        task="segmentation", input_shape=[None, 5, None, None],
        preprocessing={"tile": TILE})
    _, client = serve([seg], tmp_path / "cache", name="seg5", limits=RequestLimits())
    try:
        with client:
            named = client.post("/predict/geotiff?model=seg5",
                                json={"scene": f"s3://{cluster.bucket}/{key}"})
            sent = client.post("/predict/geotiff?model=seg5", content=body,
                               headers={"content-type": "image/tiff"})
            missing = client.post("/predict/geotiff?model=seg5",
                                  json={"scene": f"s3://{cluster.bucket}/{key}.absent"})
    finally:
        s3.delete_object(Bucket=cluster.bucket, Key=key)
    assert named.status_code == 200, named.text
    assert sent.status_code == 200, sent.text
    (got, meta), (want, _) = _read(named.content), _read(sent.content)
    assert got.shape == (300, 260) and meta["nodata"] == 255
    assert (got == want).all()
    assert missing.status_code == 400 and missing.json()["field"] == "scene", missing.text
