"""The ``surgecast`` console command's entry point.

``surgecast controller ...`` loads only the controller's modules. The controller is a
long-running process, and the other commands' libraries (scikit-learn, matplotlib,
plotly, holidays: about 140 MiB resident) would sit in its memory for nothing; its model
work runs in worker processes that load them (:mod:`controller.modelling`).
``surgecast decisions ...`` and ``surgecast review`` load only theirs too: they are the
on-call engineer's commands, asked "why did it scale?" in the middle of an incident, and
the full application took seconds to import before it could answer. Every other command
goes to the full application, :data:`controller.cli.app`.
"""

from __future__ import annotations

import sys

import typer


def _light_app(command: str) -> typer.Typer | None:
    """The application for ``command`` alone, or ``None`` when it needs the full one."""
    app = typer.Typer(add_completion=False)
    if command == "controller":
        from controller._cli_controller import app as controller_app

        app.add_typer(controller_app, name="controller")
    elif command == "decisions":
        from controller._cli_decisions import app as decisions_app

        app.add_typer(decisions_app, name="decisions")
    elif command == "review":
        from controller._cli_review import app as review_app

        app.registered_commands += review_app.registered_commands

        @app.callback()
        def _group() -> None:
            """A group, not a lone command: ``surgecast review ...`` keeps its name."""

    else:
        return None
    return app


def main() -> None:
    app = _light_app(sys.argv[1]) if len(sys.argv) > 1 else None
    if app is None:
        from controller.cli import app as full_app

        app = full_app
    app(prog_name="surgecast")
