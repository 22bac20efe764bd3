"""forja's PyTorch trainer image: a robust training runtime and the built-in trainers.

Entry points: ``python -m forja_trainer`` in a pod (reads ``FORJA_SPEC``), and
``forja-train run FILE`` / ``python -m forja_trainer run FILE`` locally.
The model architectures are a package of their own (``forja_architectures``), shared
with the server image.
"""
