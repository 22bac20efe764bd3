"""The operator's exceptions.

::

    OperatorError
     +-- ConfigError        the operator configuration file is wrong
     +-- SpecError          a resource's spec cannot be acted on (names the field)
     +-- KubeError          the API server refused or failed a request
          +-- ConflictError      409: exists already / changed under us
          +-- NotFoundError      404
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "KubeError",
    "NotFoundError",
    "OperatorError",
    "SpecError",
]


class OperatorError(Exception):
    pass


class ConfigError(OperatorError):
    pass


class SpecError(OperatorError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}")
        self.field = field


class KubeError(OperatorError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class ConflictError(KubeError):
    pass


class NotFoundError(KubeError):
    pass
