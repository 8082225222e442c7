"""`make load`: a fleet of portals against a real `fleet-server` on loopback (see `__main__`)."""
