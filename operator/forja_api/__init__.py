"""forja's API: the custom resource types and the contract with pods.

Shared by every image, so it depends only on pydantic and the standard library.
Reading and writing the store is ``forja_storage``'s, which the operator never imports.
"""
