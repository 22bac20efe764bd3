"""Shared test configuration: the local-cluster fixtures (tests/fixtures/cluster.py)."""

from fixtures.cluster import cluster, kubectl, namespace, s3_secret, wait_for

__all__ = ["cluster", "kubectl", "namespace", "s3_secret", "wait_for"]
