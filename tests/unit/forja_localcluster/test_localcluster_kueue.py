from __future__ import annotations

import base64
from pathlib import Path

import pytest

from forja_localcluster.kueue import (
    OPT_IN_LABEL,
    WEBHOOK_PORT,
    KueueError,
    kueue_configuration,
    webhook_configurations,
)

# The shape of Kueue's config/components/webhook/manifests.yaml, cut down.
MANIFESTS = """
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: mutating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate-batch-v1-job}
  failurePolicy: Fail
  name: mjob.kb.io
  rules: [{apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs]}]
  sideEffects: None
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system, path: /mutate--v1-pod}
  failurePolicy: Fail
  name: mpod.kb.io
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: validating-webhook-configuration
webhooks:
- admissionReviewVersions: [v1]
  clientConfig:
    service: {name: webhook-service, namespace: system,
              path: /validate-kueue-x-k8s-io-v1beta2-clusterqueue}
  failurePolicy: Fail
  name: vclusterqueue.kb.io
  rules: [{apiGroups: [kueue.x-k8s.io], apiVersions: [v1beta2], operations: [CREATE],
           resources: [clusterqueues]}]
  sideEffects: None
"""


def test_webhooks_point_at_the_process_with_the_cluster_ca_and_only_pods_and_kueue():
    mutating, validating = webhook_configurations(MANIFESTS, b"CA PEM")
    assert mutating["metadata"] == {"name": "kueue-mutating-webhook-configuration"}
    # the Job webhook would refuse Jobs nothing serves it for: dropped
    assert [h["name"] for h in mutating["webhooks"]] == ["mpod.kb.io"]
    pod = mutating["webhooks"][0]
    assert pod["clientConfig"] == {
        "url": f"https://127.0.0.1:{WEBHOOK_PORT}/mutate--v1-pod",
        "caBundle": base64.b64encode(b"CA PEM").decode(),
    }
    # pods only in namespaces that opt in
    assert pod["namespaceSelector"] == {"matchLabels": {OPT_IN_LABEL[0]: OPT_IN_LABEL[1]}}
    (cq,) = validating["webhooks"]
    assert cq["clientConfig"]["url"].endswith("/validate-kueue-x-k8s-io-v1beta2-clusterqueue")
    assert "namespaceSelector" not in cq


def test_manifests_without_a_pod_webhook_are_refused():
    with pytest.raises(KueueError, match="mpod"):
        webhook_configurations(MANIFESTS.replace("mpod.kb.io", "mother.kb.io"), b"x")


def test_configuration_enables_only_pods_in_opted_in_namespaces():
    cfg = kueue_configuration(Path("/state/certs"))
    assert cfg["integrations"] == {"frameworks": ["pod"]}
    assert cfg["manageJobsWithoutQueueName"] is False
    assert cfg["managedJobsNamespaceSelector"] == {
        "matchLabels": {OPT_IN_LABEL[0]: OPT_IN_LABEL[1]}}
    assert cfg["webhook"] == {"port": WEBHOOK_PORT, "host": "127.0.0.1",
                              "certDir": "/state/certs"}
    assert cfg["internalCertManagement"] == {"enable": False}
