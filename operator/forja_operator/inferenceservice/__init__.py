"""The InferenceService controller's pure parts: resolution, rollout, builders, status.

Layering: ``handlers/inferenceservice.py`` (kopf glue) -> ``reconcile`` (one pass,
through a small API seam) -> ``resolve``, ``rollout``, ``builders``, ``status``,
``errorrate`` (pure, no client imports).
"""
