# The TensorFlow trainer image: runs the distill-qat-tflite trainer
# (python -m forja_trainer_tf). Separate from the PyTorch image because importing
# triton after tensorflow segfaults (ML-STACK-NOTES.md); this image has no torch.
#
# Build from the repository root (hack/build-images.sh builds all four):
#   docker build -f trainer_image/Dockerfile.tf -t forja/trainer-tf:0.1.0 .
# Python environment: ~2.3 GB for tensorflow + tf_keras + tfmot and their deps
# (docs/trainer-tf.md, `python -m forja_trainer_tf.benchmark env-size`).
#
# BASE_IMAGE: any Debian-based image with python3 (>= 3.11) and its venv module as
# `python`; machines without a registry pass the Debian-built one (hack/images/base.sh).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS pins
COPY pyproject.toml hack/images/requirements.py /src/
RUN python /src/requirements.py /src/pyproject.toml trainer-tf > /requirements.txt

FROM ${BASE_IMAGE} AS deps
COPY --from=pins /requirements.txt /requirements.txt
ARG PIP_CERT=""
# pip and setuptools leave with the build: nothing installs into the image at run time.
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && python -m venv /opt/forja \
 && /opt/forja/bin/pip install --disable-pip-version-check -q -r /requirements.txt \
 && /opt/forja/bin/pip uninstall -q -y pip setuptools

FROM ${BASE_IMAGE}
COPY --from=deps /opt/forja /opt/forja
# TF_USE_LEGACY_KERAS: tfmot needs tf_keras models (set again in forja_trainer_tf.tfenv).
# LOGNAME: getpass.getuser() (kopf, torch) reads it before the passwd database,
# which has no entry for the arbitrary UIDs pods run as.
ENV PATH=/opt/forja/bin:$PATH \
    LOGNAME=forja \
    PYTHONPATH=/app/operator:/app/trainer_image \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    FORJA_WORKDIR=/tmp/forja \
    HOME=/tmp
COPY operator/forja_api /app/operator/forja_api
COPY operator/forja_storage /app/operator/forja_storage
COPY trainer_image/forja_trainer_tf /app/trainer_image/forja_trainer_tf
COPY trainer_image/forja_progress /app/trainer_image/forja_progress
RUN python -m compileall -q /app
# Restricted pod security: a numeric non-root user, no writes outside /tmp and mounts.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "forja_trainer_tf"]
