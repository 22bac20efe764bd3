"""Shared test configuration: the local-cluster fixtures (tests/fixtures/cluster.py)."""

import warnings

# starlette's TestClient (also used by schemathesis for ASGI apps) warns at import
# that it wants httpx2; importing it once here, quietly, keeps warnings-as-errors
# for everything else, in whichever test tree first imports it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import starlette.testclient  # noqa: F401

from fixtures.cluster import cluster, kubectl, namespace, s3_secret, wait_for
from fixtures.real_cluster import real_nodes

__all__ = ["cluster", "kubectl", "namespace", "real_nodes", "s3_secret", "wait_for"]
