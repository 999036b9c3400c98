"""The command line: the ``rnnlm`` app and one module per subcommand.

The only package that imports typer or rich. A command turns flags into a config, calls one
library function and renders its result; the library below never knows a terminal is there.
"""

from rnnlm_cli.cli.app import app, main

__all__ = ["app", "main"]
