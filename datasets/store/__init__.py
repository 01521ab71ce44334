"""datasets/store."""
