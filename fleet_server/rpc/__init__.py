"""What every gRPC-facing layer shares: the error translator and the well-known type conversions."""
