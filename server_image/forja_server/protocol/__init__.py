"""Protocol adapters: they turn HTTP requests into tensors or images and back.

Models never see a request; adapters never see a runtime.
"""
