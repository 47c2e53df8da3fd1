"""Command-line interface (``dama --help``)."""
