"""platform/commands."""
