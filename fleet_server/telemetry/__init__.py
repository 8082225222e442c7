"""Seeing the server from outside: Prometheus metrics of calls, ingest, refusals, the database, the process.

Everything here is per process and built by the `App` (`ServerMetrics`), on a registry of its
own, never prometheus-client's global one. `interceptors` puts the gRPC and ingest observers
around the auth interceptor, `sampler` refreshes the gauges that are read rather than counted,
and `exposition` serves `/metrics` — from the one process, or from the supervisor for all its
workers (prometheus-client's multiprocess mode).
"""
