"""gRPC servicers: one module per service, translating wire ⇄ domain and nothing else."""
