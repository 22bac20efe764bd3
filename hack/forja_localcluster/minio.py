"""MinIO credentials and bucket creation.

The bucket is made with one SigV4-signed ``PUT /<bucket>``: a few lines of standard
library instead of requiring boto3 before the cluster can start.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MinioCredentials", "create_bucket", "load_or_create_credentials"]

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class MinioCredentials:
    access_key: str
    secret_key: str


def load_or_create_credentials(path: Path) -> MinioCredentials:
    """Random credentials made on first start and kept in the state directory."""
    if path.exists():
        data = json.loads(path.read_text())
        return MinioCredentials(data["access_key"], data["secret_key"])
    creds = MinioCredentials("forja-" + secrets.token_hex(4), secrets.token_urlsafe(24))
    path.write_text(json.dumps({"access_key": creds.access_key, "secret_key": creds.secret_key}))
    path.chmod(0o600)
    return creds


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str, host: str, path: str, creds: MinioCredentials, now: datetime.datetime
) -> dict[str, str]:
    """SigV4 headers for a request with an empty body and no query string."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(
        [
            method, path, "",
            f"host:{host}", f"x-amz-content-sha256:{EMPTY_SHA256}", f"x-amz-date:{amz_date}", "",
            signed, EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret_key).encode(), day), REGION), "s3"),
                "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": EMPTY_SHA256,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }


def create_bucket(host: str, port: int, bucket: str, creds: MinioCredentials) -> None:
    """Create ``bucket``; an existing bucket of ours is fine."""
    hostport = f"{host}:{port}"
    headers = signed_headers(
        "PUT", hostport, f"/{bucket}", creds, datetime.datetime.now(datetime.UTC)
    )
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("PUT", f"/{bucket}", headers=headers)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    finally:
        conn.close()
    if response.status == 200 or "BucketAlreadyOwnedByYou" in body:
        return
    raise RuntimeError(f"creating bucket {bucket!r} failed: {response.status} {body[:300]}")
