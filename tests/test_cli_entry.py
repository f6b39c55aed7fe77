"""The console command's entry point: ``surgecast controller`` loads only the controller."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
sys.argv = {argv!r}
from controller.entry import main
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("sklearn", "prophet", "matplotlib", "plotly", "holidays") if m in sys.modules)
print("HEAVY", ",".join(heavy))
"""


def probe(*argv: str) -> tuple[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=["surgecast", *argv])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    heavy = done.stdout.rsplit("HEAVY", 1)[1].strip()
    return done.stdout + done.stderr, [m for m in heavy.split(",") if m]


def test_controller_run_loads_no_model_or_plot_library() -> None:
    out, heavy = probe("controller", "run", "--engine", "bogus")
    assert "unknown --engine 'bogus'" in out
    assert heavy == []


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (("controller", "run", "--help"), "--model-workers"),
        (("controller", "--help"), "run"),
        (("replay", "--help"), "--startup-delay"),
    ],
)
def test_every_command_is_still_reachable(argv: tuple[str, ...], shown: str) -> None:
    out, _ = probe(*argv)
    assert shown in out


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (("decisions", "list", "--help"), "--since"),
        (("decisions", "explain", "--help"), "--at"),
        (("review", "--help"), "Usage: surgecast review"),
    ],
)
def test_the_on_call_commands_load_no_model_or_plot_library(
    argv: tuple[str, ...], shown: str
) -> None:
    """``decisions`` and ``review`` answer "why did it scale?" mid-incident: through the full
    application they first imported scikit-learn, matplotlib and Prophet, seconds of CPU."""
    out, heavy = probe(*argv)
    assert shown in out
    assert heavy == []
