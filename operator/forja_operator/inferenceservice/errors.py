"""Errors of the InferenceService controller.

InferenceServiceError          catch-all base (a forja_operator.errors.OperatorError)
├── InvalidServiceSpecError         the spec cannot be served as written (names the field)
└── NoMatchingVersionError          no Ready ModelVersion matches a selector (yet)
"""

from __future__ import annotations

from forja_operator.errors import OperatorError, SpecError

__all__ = ["InferenceServiceError", "InvalidServiceSpecError", "NoMatchingVersionError"]


class InferenceServiceError(OperatorError):
    """Base of every error this package raises."""


class InvalidServiceSpecError(SpecError, InferenceServiceError):
    """Also a forja_operator.errors.SpecError, so generic handling applies."""


class NoMatchingVersionError(InferenceServiceError):
    def __init__(self, model: str, selector: str) -> None:
        super().__init__(f"no Ready ModelVersion of model {model!r} matches {selector}")
        self.model = model
        self.selector = selector
