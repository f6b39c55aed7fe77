"""Command-line entry points for the forecaster side.

Each command lives in a ``_cli_*`` module as a thin shell over a library function, so
analysts get the same behaviour in a notebook. This module only gathers them into one app.
"""

from __future__ import annotations

import typer

from forecaster import _cli_generate, _cli_ingest, _cli_models, _cli_train

app = typer.Typer(no_args_is_help=True, add_completion=False)

# Each command module registers here with one line.
app.registered_commands += _cli_generate.app.registered_commands
app.registered_commands += _cli_ingest.app.registered_commands
app.registered_commands += _cli_models.app.registered_commands
app.registered_commands += _cli_train.app.registered_commands
