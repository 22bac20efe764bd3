"""What every controller here shares: events, conditions, time, merge patches, pods, the API seam.

Pure except :mod:`api`, which only declares the seam; no kopf, no Kubernetes client.
"""
