"""forja's model server: one process serving a ModelVersion or a pipeline of them."""

__version__ = "0.1.0"
