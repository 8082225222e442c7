"""Domain logic: each module owns its rules and its SQL, and takes a `Session` per unit of work."""
