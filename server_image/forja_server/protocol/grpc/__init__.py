"""Generated stubs of the Open Inference Protocol's gRPC service (``inference`` package).

``grpc_predict_v2.proto`` is the protocol's own file; the ``*_pb2*.py`` modules are
generated from it and committed, so the image needs no protoc and no grpcio-tools
(a build-time-only tool that must match the pinned protobuf). Regenerate after
editing the .proto with ``hack/grpc-stubs.sh`` (grpcio-tools in a throw-away venv);
it also puts the messages in a private descriptor pool, so KServe's and Triton's
clients (same ``inference`` package) can be imported beside this server.
"""
