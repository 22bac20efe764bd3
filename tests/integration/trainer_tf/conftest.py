"""These pods run on the real-node cluster (tests/fixtures/real_cluster.py): from the
forja/trainer-tf image, in a runc container under a real kubelet, in a namespace that
enforces the restricted profile."""

from fixtures.real_cluster import on_real_nodes, restricted_namespaces

cluster = on_real_nodes("trainer-tf")
namespace = restricted_namespaces()
