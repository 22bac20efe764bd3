"""forja's PyTorch trainer image: a robust training runtime and the built-in trainers.

Entry points: ``python -m forja_trainer`` in a pod (reads ``FORJA_SPEC``), and
``forja-train run FILE`` / ``python -m forja_trainer run FILE`` locally.
Kept import-light: the model server imports ``forja_trainer.architectures``.
"""
