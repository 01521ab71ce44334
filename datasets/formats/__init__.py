"""datasets/formats."""
