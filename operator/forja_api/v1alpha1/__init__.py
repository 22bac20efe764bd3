"""forja.dev/v1alpha1: TrainingJob, ModelVersion, InferenceService.

The pydantic models here are the single source of truth: ``python -m
forja_api.crdgen`` derives the CRDs in ``crds/`` from them, and a test fails when
the two drift apart.
"""

from forja_api.v1alpha1.common import API_VERSION, GROUP, VERSION, Condition
from forja_api.v1alpha1.inferenceservice import InferenceService, InferenceServiceSpec
from forja_api.v1alpha1.modelversion import ModelVersion, ModelVersionSpec
from forja_api.v1alpha1.trainingjob import TrainingJob, TrainingJobSpec

KINDS = (TrainingJob, ModelVersion, InferenceService)
"""Every kind of the group, in the order they appear in a model's life."""

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "InferenceService",
    "InferenceServiceSpec",
    "ModelVersion",
    "ModelVersionSpec",
    "TrainingJob",
    "TrainingJobSpec",
]
