"""Several server processes on one machine: the supervisor that runs them (`livechat serve --workers
N`), what each worker is, and the listeners it opens (the shared gRPC port, its Unix socket for Envoy)."""
