"""Schemathesis fuzzes every operation of the OpenAPI document: no 5xx, ever.

Bounded (25 examples per operation, derandomized, no deadline) so the file runs
in well under a minute. The served app is real: a tiny classifier and a
segmenter (for the GeoTIFF route), loaded from verified artifacts. The schema
is loaded at import because schemathesis parametrizes at collection time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from . import _server_tiny_models as tm
from ._server_helpers import serve

# GeoTIFF bodies are opaque bytes to the fuzzer, like application/octet-stream.
schemathesis.serializer.alias("image/tiff", "application/octet-stream")

_ROOT = Path(tempfile.mkdtemp(prefix="forja-fuzz-"))
_, _client = serve([tm.classifier(_ROOT), tm.segmenter(_ROOT), tm.unet(_ROOT)], _ROOT / "cache",
                   name="fuzz")
schema = schemathesis.openapi.from_asgi("/openapi.json", _client.app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_5xx(case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
