"""Fleet sync customer-side pusher library."""
