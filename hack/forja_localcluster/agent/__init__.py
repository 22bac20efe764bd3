"""The node agent: registers Nodes and runs the pods bound to them as local processes.

Modules: ``podspec`` (pure: env, mounts, quantities), ``status`` (pure: the pod status
a kubelet would report), ``volumes`` (materialises volumes), ``runtime`` (one
container process: mount namespace, cgroup, signals), ``probes``, ``pod_worker`` (one
pod's lifecycle), ``node`` (registration and heartbeat),
``logserver`` (``kubectl logs``), ``proxy`` (Service ClusterIPs), ``agent`` (wiring).
"""

__all__: list[str] = []
