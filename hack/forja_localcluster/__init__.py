"""A real local Kubernetes cluster for forja's tests and demo.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) is
the real one, built from its Go modules by ``hack/build-tools.sh``; MinIO provides
S3. The nodes are real too: kubelets on containerd, runc and CNI (:mod:`.nodes`). Ours
are the wiring, a fake GPU device plugin and the PVC provisioner (:mod:`.provisioner`).

Use ``python -m forja_localcluster start|stop|status|env``.
"""

from forja_localcluster.config import ClusterConfig, ClusterInfo
from forja_localcluster.errors import ClusterError

__all__ = ["ClusterConfig", "ClusterError", "ClusterInfo"]
