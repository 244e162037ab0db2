"""What operators see of a running server: Prometheus metrics and structured logs.

Fed by callbacks the composition root (server/app.py) wires from the api layer (one record per RPC),
the superlike batcher (batch sizes), settlement and storage (pool use); nothing here is imported by
the domain, the services or the adapters.
"""
