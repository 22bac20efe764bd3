"""An attempt that cannot be scheduled within unschedulableSeconds is torn down and
retried, on the local cluster's real API server and scheduler (no real node needed:
no node has 64 GPUs, so the scheduler says so and the pods stay Pending)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes

from .operator_harness import Operator, apply, get, trainingjob

pytestmark = pytest.mark.cluster
# Attempts from forja/trainer, verify and benchmark pods from forja/server.
cluster = on_real_nodes("trainer", "server")
TJ = "trainingjobs.forja.dev"
BOUND = 4


@pytest.fixture(scope="module")
def short_bound_operator(
    cluster: Any, crds_installed: None, operator_config: Path
) -> Iterator[Operator]:
    """The suite's operator configuration with a 4 s unschedulable bound."""
    config = yaml.safe_load(operator_config.read_text())
    path = operator_config.with_name("config-unschedulable.yaml")
    path.write_text(yaml.safe_dump({**config, "unschedulableSeconds": BOUND}))
    op = Operator(path, cluster.kubeconfig)
    op.start()
    yield op
    op.stop()


def test_an_unschedulable_gang_is_torn_down_and_retried(cluster, short_bound_operator, store_ns):
    ns = store_ns
    # A PyTorch trainer (custom refuses workers > 1); its pods never start anyway.
    job = trainingjob("nogpu", resources={"gpus": 64}, workers=2, trainer="image-classifier")
    del job["spec"]["command"]
    job["spec"]["dataset"]["uri"] = "generated://shapes"
    apply(cluster, ns, job)

    def retried():
        body = get(cluster, ns, TJ, "nogpu")
        atts = (body or {}).get("status", {}).get("attempts") or []
        return body if len(atts) >= 2 and atts[0].get("endTime") else None

    body = wait_for(retried, 90, message="a second attempt after Unschedulable")
    first = body["status"]["attempts"][0]
    assert first["reason"] == "Unschedulable", first
    assert f"could not be scheduled within {BOUND}s" in first["message"]
    assert "nvidia.com/gpu" in first["message"]  # the scheduler's own words
    assert first["unschedulableSince"] <= first["endTime"]
    assert body["status"]["attempts"][1]["index"] == 2

    # the first attempt's pods and its rendezvous Service are gone; the second's exist
    def first_gone():
        pods = get(cluster, ns, "pods", selector="forja.dev/trainingjob=nogpu")["items"]
        names = {p["metadata"]["name"] for p in pods}
        return names if not names & {"nogpu-a1-w0", "nogpu-a1-w1"} else None

    names = wait_for(first_gone, 60, message="attempt 1's pods deleted")
    assert names <= {"nogpu-a2-w0", "nogpu-a2-w1", "nogpu-a3-w0", "nogpu-a3-w1"}, names
    assert get(cluster, ns, "services", "nogpu-a1-rdzv") is None
    # a Warning event names the reason and carries the scheduler's message
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "reason=Unschedulable", "-o", "json"
    ).stdout
    messages = [e["message"] for e in yaml.safe_load(events)["items"]]
    assert any("could not be scheduled" in m and "retrying" in m for m in messages), messages
    # no retry budget spent: the job is still going, not Failed, after several rounds
    assert body["status"]["phase"] != "Failed"
