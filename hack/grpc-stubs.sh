#!/usr/bin/env bash
# Regenerates forja_server/protocol/grpc/*_pb2*.py from grpc_predict_v2.proto.
# Needs grpcio-tools matching the pinned grpcio/protobuf, in a throw-away venv
# (never the shared dev venv): GRPC_TOOLS_PYTHON=/tmp/grpctools-venv/bin/python.
#
# The messages go into a private descriptor pool, not protobuf's default one: the
# protocol's package is "inference" in KServe's and Triton's clients too, and two
# files defining inference.ServerLiveRequest in the default pool cannot be imported
# into one process (tests run their clients beside our server).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${GRPC_TOOLS_PYTHON:?set GRPC_TOOLS_PYTHON to a python with grpcio-tools}"
cd "$here/server_image"
"$py" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
  forja_server/protocol/grpc/grpc_predict_v2.proto
pb2=forja_server/protocol/grpc/grpc_predict_v2_pb2.py
sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/_POOL = _descriptor_pool.DescriptorPool()  # private: see hack\/grpc-stubs.sh\nDESCRIPTOR = _POOL.AddSerializedFile(/' "$pb2"
grep -q '^_POOL = ' "$pb2"
