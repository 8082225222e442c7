"""Authentication at the door: the per-method policy, the interceptor, and the call context it hands on."""
