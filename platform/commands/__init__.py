"""One module per ``rtml`` subcommand."""
