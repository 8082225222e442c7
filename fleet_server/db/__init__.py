"""Storage: typed models, the session/thread plumbing, the embedded server and migrations."""
