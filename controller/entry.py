"""The ``surgecast`` console command's entry point.

``surgecast controller ...`` loads only the controller's modules. The controller is a
long-running process, and the other commands' libraries (scikit-learn, matplotlib,
plotly, holidays: about 140 MiB resident) would sit in its memory for nothing; its model
work runs in worker processes that load them (:mod:`controller.modelling`). Every other
command goes to the full application, :data:`controller.cli.app`.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["controller"]:
        import typer

        from controller._cli_controller import app as controller_app

        app = typer.Typer(add_completion=False)
        app.add_typer(controller_app, name="controller")
        app(prog_name="surgecast")
    else:
        from controller.cli import app

        app()
