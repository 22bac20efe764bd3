"""forja's TensorFlow trainer image: the ``distill-qat-tflite`` pipeline.

A separate package and image from :mod:`forja_trainer` (PyTorch): importing triton
after tensorflow segfaults, so the two frameworks never share a process. This
package therefore never imports ``forja_trainer``; it speaks the pod contract
through :mod:`forja_api.contract` directly.

Modules that import TensorFlow (``data``, ``models``, ``distill``, ``qat``,
``export``, ``pipeline``) do so at import time; the rest (``config``,
``dataset``, ``generate``, ``thresholds``, ``state``, ``progress``, ``store``)
are plain Python and numpy so they can be unit-tested without TF.
"""

__all__: list[str] = []
