"""Fleet sync central server: gRPC services over a multi-tenant PostgreSQL."""
