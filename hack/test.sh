#!/usr/bin/env bash
# The test command (README): installs what it needs (Go-built cluster binaries,
# the Python environment, the container images), lints, type-checks and runs the whole test suite
# against a local cluster that it starts once and reuses.
# Extra arguments go to pytest, e.g. `bash hack/test.sh tests/unit -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# A cluster of its own (instance 1, its own network namespace), never the demo's
# (instance 0): the demo leaves forja installed by Helm with its operator running,
# which would act on the suite's objects. .ci/run picks instance 9 the same way.
export FORJA_CLUSTER_INSTANCE="${FORJA_CLUSTER_INSTANCE:-1}"
export FORJA_NETNS="${FORJA_NETNS:-forja-test}"

bin="$(bash hack/build-tools.sh)"
# Argo CD (from its pinned module) and Redis for tests/integration/gitops; outside
# the network namespace because a first run installs Redis with apt-get.
bash hack/build-argocd.sh >/dev/null
# Kueue's controller manager (from its pinned module) for tests/integration/operator/
# test_operator_kueue.py; built here, outside the namespace, like Argo CD.
bash hack/build-kueue.sh >/dev/null
# The binaries are cached by pin; Go's build cache would hold 7-9 GB that the
# suite's cluster needs.
bash hack/free-go-build-cache.sh
venv="$(bash hack/venv.sh)"
# KServe's and Triton's Python clients, in a venv of their own (their protobuf pin
# conflicts with ours): tests/integration/isvc/test_isvc_clients.py runs them.
bash hack/client-venv.sh >/dev/null
# The four images (tests/integration/images runs them under runc); cached layers make
# a warm run take seconds.
bash hack/build-images.sh >/dev/null
export PATH="$venv/bin:$bin:$PATH"
export FORJA_TOOLS_BIN="$bin" FORJA_VENV="$venv"

echo "== ruff"; ruff check .
echo "== mypy"; mypy operator/forja_api operator/forja_storage operator/forja_operator trainer_image server_image hack/forja_localcluster
echo "== import-linter"; PYTHONPATH=operator:trainer_image:server_image:hack lint-imports
echo "== pytest"
set +e
# Inside the cluster's own network namespace (hack/netns.sh says why).
bash hack/netns.sh python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $rc
