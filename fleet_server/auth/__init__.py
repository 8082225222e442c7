"""Authentication: token format and hashing, identities, the per-method policy and the interceptor."""
