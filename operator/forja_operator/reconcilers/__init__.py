"""Read the cache, plan (pure), apply the plan through kube.py. One module per kind."""
