// Pins Kubeflow's training-operator (v1, PyTorchJob) for the side-by-side operator
// benchmark in bench/operator. Only the benchmark uses it; tests and CI do not.
// v1.8.1 is the last v1 release; its go.mod has no replace directives to copy.
module forja.dev/hack/tools/training-operator

go 1.26.0

require github.com/kubeflow/training-operator v1.8.1
