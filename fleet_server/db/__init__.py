"""The database plumbing: typed models, sessions and their threads, migrations, the embedded server."""
