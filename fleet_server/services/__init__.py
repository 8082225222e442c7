"""gRPC servicers: one module per service, each method decodes, calls one use case, encodes."""
