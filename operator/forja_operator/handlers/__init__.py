"""kopf handlers, one module per kind; ``python -m forja_operator`` imports them all.

Handlers are glue: watch events update the caches and enqueue keys, startup
handlers prime the caches and start the queues. Decisions live in status/,
manifests in builders/, API calls in kube.py.
"""
