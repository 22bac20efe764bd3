"""What the operator reads back from the model server beyond forja_api.serving.

forja_api.serving holds the agreed config, port and probe paths; the request
counter's name and labels (set by forja_server/metrics.py) are repeated here as
the one place the operator depends on them.
"""

from __future__ import annotations

__all__ = ["ERROR_STATUS_PREFIX", "REQUESTS_METRIC", "STATUS_LABEL"]

REQUESTS_METRIC = "forja_requests"
"""A counter (exposed as ``forja_requests_total``) labelled model, endpoint, status."""
STATUS_LABEL = "status"
"""The HTTP status code of the answer."""
ERROR_STATUS_PREFIX = "5"
"""Server-side failures; 4xx are the client's and do not count against a canary."""
