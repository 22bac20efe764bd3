// Pins Kueue (its controller manager and, from the same module source, its CRDs)
// for the Kueue integration tests against the local cluster.
module forja.dev/hack/tools/kueue

go 1.26.0

require sigs.k8s.io/kueue v0.17.0
