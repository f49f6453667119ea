"""The ``carechain`` command line (typer): one sub-app per area, wired in ``cli.main``."""
