"""Shared test configuration: the local-cluster fixtures (tests/fixtures/cluster.py)."""

import os
import warnings

# The suite's own cluster instance, never the demo's (0): hack/test.sh and .ci/run set
# theirs; a bare `pytest` gets 1. Before the fixtures, which read it at import.
os.environ.setdefault("FORJA_CLUSTER_INSTANCE", "1")

# starlette's TestClient (also used by schemathesis for ASGI apps) warns at import
# that it wants httpx2; importing it once here, quietly, keeps warnings-as-errors
# for everything else, in whichever test tree first imports it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import starlette.testclient  # noqa: F401

from fixtures.cluster import cluster, kubectl, namespace, s3_secret, wait_for
from fixtures.real_cluster import real_nodes

__all__ = ["cluster", "kubectl", "namespace", "real_nodes", "s3_secret", "wait_for"]
