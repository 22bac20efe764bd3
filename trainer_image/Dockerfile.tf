# syntax=docker/dockerfile:1.7
# The TensorFlow trainer image: runs the distill-qat-tflite trainer
# (python -m forja_trainer_tf). Separate from the PyTorch image because importing
# triton after tensorflow segfaults (ML-STACK-NOTES.md); this image has no torch.
#
# Build from the repository root:
#   docker build -f trainer_image/Dockerfile.tf -t forja-trainer-tf:dev .
# Python environment: ~2.3 GB for tensorflow + tf_keras + tfmot and their deps
# (tensorflow alone 1.9 GB), ~2.5 GB with the rest of the trainer-tf extra
# (docs/trainer-tf.md, `python -m forja_trainer_tf.benchmark env-size`).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
# Resolve the trainer-tf extra from pyproject.toml (one source of truth for pins).
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(p["dependencies"])
for dep in p["optional-dependencies"]["trainer-tf"]:
    if dep.startswith(p["name"] + "["):
        extra = dep.split("[", 1)[1].rstrip("]")
        reqs += p["optional-dependencies"][extra]
    else:
        reqs.append(dep)
print("\n".join(reqs))
PY
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
# TF_USE_LEGACY_KERAS: tfmot needs tf_keras models (set again in forja_trainer_tf.tfenv).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/operator:/app/trainer_image \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOME=/tmp
COPY --from=build /opt/venv /opt/venv
COPY operator/forja_api /app/operator/forja_api
COPY trainer_image/forja_trainer_tf /app/trainer_image/forja_trainer_tf
# Restricted pod security: a fixed non-root user, no writes outside /tmp and mounts.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin forja
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "forja_trainer_tf"]
