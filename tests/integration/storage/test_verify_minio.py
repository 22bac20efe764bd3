"""The verify program against the cluster's MinIO: a multi-GB artifact verifies in
flat memory (the verify pod's limit is 512 Mi), its peak RSS printed for the record."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from fixtures.cluster import Cluster
from forja_storage.verify import EXIT_OK
from unit.storage.test_verify import sparse_zeros, verify_peak_rss

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

VERIFY_POD_LIMIT_MIB = 512


def test_a_3gb_object_in_minio_verifies_under_the_pod_limit(cluster: Cluster, tmp_path: Path
                                                             ) -> None:
    size = 3 * 1024**3
    sha = sparse_zeros(tmp_path / "model.bin", size)  # sparse: no local disk used
    s3 = boto3.client("s3", endpoint_url=cluster.s3_endpoint,
                      aws_access_key_id=cluster.s3_access_key,
                      aws_secret_access_key=cluster.s3_secret_key)
    key = f"verify-tests/{uuid.uuid4().hex[:8]}/model.bin"
    s3.upload_file(str(tmp_path / "model.bin"), cluster.bucket, key,
                   Config=TransferConfig(multipart_chunksize=64 * 1024**2))
    try:
        result = verify_peak_rss(f"s3://{cluster.bucket}/{key}", sha, env={
            "FORJA_S3_ENDPOINT": cluster.s3_endpoint,
            "AWS_ACCESS_KEY_ID": cluster.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": cluster.s3_secret_key,
        })
    finally:
        s3.delete_object(Bucket=cluster.bucket, Key=key)
    print(f"verify of a {size} byte object: peak RSS {result['peak_rss_mib']:.1f} MiB")
    assert result["code"] == EXIT_OK, result
    assert float(str(result["peak_rss_mib"])) < VERIFY_POD_LIMIT_MIB / 2, result
