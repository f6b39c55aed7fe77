"""``surgecast backtest``: rolling-origin backtests of one model or all, per series."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import typer  # noqa: E402

from forecaster._cli_common import (  # noqa: E402
    ENGINE_OPTION,
    SCHEDULER_OPTION,
    check_model_options,
    fail,
    steps,
)
from forecaster.engine import open_engine  # noqa: E402
from forecaster.frames import quantile_column, read_series, series_freq  # noqa: E402
from forecaster.models import registry  # noqa: E402
from forecaster.training import select  # noqa: E402

app = typer.Typer()


@app.command("backtest")
def backtest_command(
    series_path: Path = typer.Option(
        ..., "--series", help="Long-format series (.csv or .parquet)."
    ),
    model: str = typer.Option("auto", "--model", help="auto, or one of the model names."),
    horizon: str = typer.Option("1h", "--horizon", help="Intervals (48) or a duration (2h)."),
    folds: int = typer.Option(3, "--folds", min=1, help="Backtest cutoffs per model."),
    every: str | None = typer.Option(
        None,
        "--every",
        help="Between cutoffs: intervals (6) or a duration (6h); default the horizon.",
    ),
    upper: float = typer.Option(0.9, "--quantile", help="The upper quantile scored."),
    season: str = typer.Option(
        "1D", "--season", help="Season of the MASE scale, a duration like 1D or 7D."
    ),
    tz: str | None = typer.Option(None, "--tz", help="Service time zone for day types."),
    country: str | None = typer.Option(None, "--country", help="Holiday calendar, e.g. CN."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG of forecast band vs actual."),
    engine_name: str = ENGINE_OPTION,
    scheduler: str | None = SCHEDULER_OPTION,
) -> None:
    """Backtest models with rolling origins; ``auto`` picks per series by the selection score.

    ``auto`` compares the fast models; Prophet is backtested when named (``--model
    prophet``), as it refits for seconds to minutes per fold. The selection score is the
    median's pinball loss plus the upper quantile's, shortfalls weighted three times:
    under-forecasting is what pages on-call.
    """
    check_model_options(upper, season, tz, country)
    if plot is not None:
        _check_plot_path(plot)
    models = registry(country=country, tz=tz, include_slow=model != "auto")
    if model != "auto" and model not in models:
        fail(f"unknown --model {model!r}; choose auto or one of {', '.join(models)}")
    candidates = models if model == "auto" else {model: models[model]}
    try:
        frame = read_series(series_path)
        step = series_freq(frame)
        h = steps("--horizon", horizon, step)
        stride = steps("--every", every, step) if every else None
        with open_engine(engine_name, scheduler) as engine:
            selection = select(frame, candidates, h, folds, stride, upper, season, engine=engine)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    scores = selection.scores
    if as_json:
        # a score with nothing to measure (the MASE of a constant series) is null: NaN is
        # not JSON, and strict parsers (JavaScript's, Go's) refused the whole document
        records = scores.astype(object).where(scores.notna(), None).to_dict(orient="records")
        typer.echo(json.dumps(records, indent=2, default=float, allow_nan=False))
    else:
        columns = [
            "unique_id",
            "model",
            "mae",
            "mase",
            "smape",
            f"pinball_{quantile_column(upper)}",
            "coverage",
            "peak_recall",
            "selection_score",
            "chosen",
        ]
        typer.echo(scores[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if plot is not None:
        chosen = selection.chosen()
        if not chosen:  # every series lacks data in every window: no fold has a score
            fail("nothing to plot: no series has an observed value in any backtest window")
        uid, name = next(iter(chosen.items()))
        folds_of = selection.results[name]
        _plot(folds_of[folds_of["unique_id"] == uid], upper, plot)


def _check_plot_path(path: Path) -> None:
    """Refuse a ``--plot`` matplotlib could not write, before the backtest: found at the
    save, a missing folder or an unknown extension was a traceback after the whole run."""
    if not path.parent.is_dir():
        fail(f"--plot {path}: no such directory {str(path.parent)!r}")
    kinds = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if path.suffix and path.suffix[1:].lower() not in kinds:
        fail(f"--plot {path}: matplotlib writes no {path.suffix!r} files; use .png, .svg or .pdf")


def _plot(results: pd.DataFrame, upper: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(12, 4), dpi=90)
    ax.plot(results["ds"], results["y"], color="#1f77b4", linewidth=0.8, label="actual")
    for cutoff, fold in results.groupby("cutoff"):
        ax.fill_between(
            fold["ds"],
            fold["q0.5"],
            fold[quantile_column(upper)],
            color="#ff7f0e",
            alpha=0.3,
            linewidth=0,
        )
        ax.axvline(cutoff, color="grey", linewidth=0.5)
    ax.plot([], [], color="#ff7f0e", alpha=0.3, linewidth=8, label=f"forecast median to q{upper:g}")
    ax.set_title("Backtest: forecast band vs actual (grey lines: cutoffs)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:  # no permission, a full disk
        fail(f"--plot {path}: cannot write: {exc.strerror or exc}")
    finally:
        plt.close(fig)
