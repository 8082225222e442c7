"""fleetctl: the operators' command line, a client of the admin and query services."""
