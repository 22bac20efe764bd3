"""A real local Kubernetes cluster for forja's tests and demo.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) is
the real one, built from its Go modules by ``hack/build-tools.sh``; MinIO provides
S3. The one part we write is the node agent (:mod:`forja_localcluster.agent`), which
registers Nodes and runs the pods bound to them as local processes.

Use ``python -m forja_localcluster start|stop|status|env``.
"""

from forja_localcluster.config import ClusterConfig, ClusterInfo
from forja_localcluster.errors import ClusterError

__all__ = ["ClusterConfig", "ClusterError", "ClusterInfo"]
