"""The M4 yardstick the forecast benchmark scores ``auto`` with (``benchmarks/m4.py``), and
the path that scores the official test part when it is at hand (``--m4-test``).

Issue #3's M4 target is judged on a test part that is held back from this machine, so the
code that will score it must be right before anyone runs it: Naive2 by the M4 rules, OWA,
and the written forecasts being the ones scored.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import m4  # noqa: E402


def _forecast_benchmark():
    spec = importlib.util.spec_from_file_location("forecast_benchmark", BENCHMARKS / "forecast.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seasonal(days: int, seed: int, noise: float = 0.0) -> np.ndarray:
    hours = np.arange(days * m4.PERIOD)
    profile = 1 + 0.6 * np.sin(2 * np.pi * (hours % m4.PERIOD) / m4.PERIOD)
    rng = np.random.default_rng(seed)
    return 100 * profile * (1 + noise * rng.standard_normal(len(hours)))


def _write_wide(path: Path, series: dict[str, np.ndarray]) -> None:
    """M4's layout: ``V1`` the id, then the values, shorter series padded with blanks."""
    width = max(len(y) for y in series.values())
    header = ",".join(f'"V{n}"' for n in range(1, width + 2))
    rows = [
        ",".join([f'"{uid}"', *map(str, y), *[""] * (width - len(y))]) for uid, y in series.items()
    ]
    path.write_text("\n".join([header, *rows]) + "\n")


@pytest.mark.parametrize(
    ("lag", "expected"), [(1, 0.4), (2, -0.1), (3, -0.4), (4, -0.4)]
)  # R: acf(1:5)
def test_acf_matches_r(lag, expected):
    assert m4.acf(np.arange(1.0, 6.0), 4)[lag - 1] == pytest.approx(expected)


def test_naive2_continues_a_purely_seasonal_series_exactly():
    whole = _seasonal(12, seed=0)
    history, future = whole[: -m4.HORIZON], whole[-m4.HORIZON :]
    assert m4.is_seasonal(history)
    np.testing.assert_allclose(m4.naive2(history), future, rtol=1e-9)


@pytest.mark.parametrize(
    "history",
    [
        100 + 10 * np.sin(2 * np.pi * np.arange(30 * m4.PERIOD) / 96),  # r(24) = 0
        _seasonal(2, seed=2),  # seasonal, but shorter than three periods
    ],
    ids=["four-day-wave", "too-short"],
)
def test_naive2_is_the_last_value_without_a_significant_season(history):
    assert not m4.is_seasonal(history)
    np.testing.assert_array_equal(m4.naive2(history), np.full(m4.HORIZON, history[-1]))


def test_owa_is_one_for_naive2_and_halves_with_both_errors():
    naive2 = (20.0, 2.0)
    assert m4.owa(*naive2, naive2) == 1.0
    assert m4.owa(10.0, 1.0, naive2) == 0.5
    assert m4.owa(10.0, 2.0, naive2) == 0.75


def test_read_wide_drops_the_padding_of_shorter_series(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text('"V1","V2","V3","V4"\n"H1",1,2,3\n"H2",4,5,\n')
    series = m4.read_wide(path)
    assert list(series) == ["H1", "H2"]
    np.testing.assert_array_equal(series["H2"], [4.0, 5.0])


@pytest.mark.slow
def test_official_test_scoring_scores_the_forecasts_it_writes(tmp_path, capsys):
    """``--m4-test`` scores exactly the forecasts ``--m4-forecasts-out`` writes."""
    lengths = {"H1": 30, "H2": 28, "H3": 31}  # days of training data; unequal like M4's
    whole = {
        uid: _seasonal(days + 2, seed=n, noise=0.1) for n, (uid, days) in enumerate(lengths.items())
    }
    train = {uid: y[: -m4.HORIZON] for uid, y in whole.items()}
    test = {uid: y[-m4.HORIZON :] for uid, y in whole.items()}
    folder = tmp_path / "m4-hourly"
    folder.mkdir()
    _write_wide(folder / "Hourly-train.csv", train)
    _write_wide(tmp_path / "Hourly-test.csv", test)
    pd.DataFrame(
        {
            "method_id": ["Naive2", "sNaive"],
            "smape_hourly": [18.383, 13.912],
            "mase_hourly": [2.395, 1.193],
            "owa_hourly": [1.0, 0.627],
        }
    ).to_csv(folder / "m4_hourly_point_forecast_results.csv", index=False)
    benchmark = _forecast_benchmark()
    out = tmp_path / "auto.csv"

    benchmark.m4_part(
        tmp_path, quick=False, with_prophet=False, test=tmp_path / "Hourly-test.csv", out=out
    )

    written = pd.read_csv(out).set_index("id")
    assert list(written.index) == list(lengths)
    assert list(written.columns) == [f"F{n}" for n in range(1, m4.HORIZON + 1)]
    forecasts = {uid: row.to_numpy(dtype=float) for uid, row in written.iterrows()}
    naive2 = m4.scores(test, {u: m4.naive2(y) for u, y in train.items()}, train)
    expected = m4.owa(*m4.scores(test, forecasts, train), naive2)
    printed = capsys.readouterr().out.split("M4 Hourly, official test")[1]
    auto_row = next(
        line.split() for line in printed.splitlines() if line.strip().startswith("auto")
    )
    assert float(auto_row[3]) == pytest.approx(expected, abs=5e-4)
    assert expected < 1.0  # Naive2 carries the noise of one last value into every step
