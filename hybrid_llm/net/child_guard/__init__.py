"""Put on the PYTHONPATH of children while offline, so `sitecustomize` here guards them too."""
