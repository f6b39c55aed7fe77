"""The review page in a real browser: headless Debian Chromium driven by Selenium, over the
controller's ``/ui`` on loopback, on a log filled by a replayed morning.

Selenium is given the driver and the browser, so it never runs Selenium Manager (which
would download them). A screenshot is kept at tests/artifacts/review.png (gitignored) and
in the test's tmp_path.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from controller.decisions import DecisionLog, DecisionRecord
from controller.explain import explain
from controller.http import ControllerHTTPServer
from controller.review import review_page, review_route
from tests.test_cli_decisions import SCALER, Replayed, replayed  # noqa: F401 (a fixture)
from tests.test_decisions import SCALER as SAMPLE_SCALER
from tests.test_decisions import T0, sample
from tests.test_review import REPLAY_END

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TZ = "Asia/Shanghai"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: `make test` installs Debian's chromium "
            "and chromium-driver (scripts/test-services.sh)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(replayed: Replayed) -> Iterator[str]:  # noqa: F811
    """The replayed scaler's page, served by the controller's HTTP server on loopback."""
    with DecisionLog(replayed.db) as log:
        server = ControllerHTTPServer(
            CollectorRegistry(), lambda: (True, "ok"), lambda: (True, "ok"), "127.0.0.1", 0
        )
        server.routes["/ui"] = review_route(log, clock=lambda: REPLAY_END)
        server.start()
        yield f"http://127.0.0.1:{server.port}/ui?scaler={SCALER}&tz={TZ}"
        server.stop()


@pytest.fixture(scope="module")
def records(replayed: Replayed) -> list[DecisionRecord]:  # noqa: F811
    with DecisionLog(replayed.db) as log:
        return list(log.list(SCALER))


def marker(driver: webdriver.Chrome, row_id: str) -> WebElement:
    """The chart's marker of the decision in table row ``row_id``."""
    # plotly.js names each trace's SVG group after a generated uid; the page tags the
    # decisions trace with meta "decisions" and each marker with its table row.
    uid, index = driver.execute_script(
        """
        const trace = document.getElementById('chart-0')._fullData
            .find(t => t.meta === 'decisions');
        return [trace.uid, trace.customdata.indexOf(arguments[0])];
        """,
        row_id,
    )
    assert index >= 0, f"no marker for {row_id}"
    return driver.find_elements(By.CSS_SELECTOR, f"#chart-0 g.trace{uid} path.point")[index]


def shown(driver: webdriver.Chrome) -> tuple[str, int]:
    """The filter's count and the rows actually displayed."""
    count = driver.find_element(By.CSS_SELECTOR, "form.filters output").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#table-0 tbody tr")
    return count, sum(1 for row in rows if row.is_displayed())


def set_time(driver: webdriver.Chrome, name: str, value: str) -> None:
    """Type into a datetime-local field the way the picker does (its keys vary by locale)."""
    field = driver.find_element(By.CSS_SELECTOR, f"form.filters input[name={name}]")
    driver.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        field,
        value,
    )


def test_review_page_in_chromium(
    browser: webdriver.Chrome, page_url: str, records: list[DecisionRecord], tmp_path: Path
) -> None:
    driver = browser
    driver.get(page_url)
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer .trace")
    )
    assert driver.title == "surgecast: scaling decisions"

    # Nothing came from anywhere but the page itself, and no script failed.
    origin = page_url.split("/ui")[0]
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(url.startswith(origin) for url in fetched), fetched
    assert [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"] == []
    buttons = driver.find_elements(By.CSS_SELECTOR, "#chart-0 .modebar-btn")
    assert "Share chart..." not in [button.get_attribute("data-title") for button in buttons]

    # The chart: six traces, four drawn lines, the forecast's area, a marker per scaling
    # decision.
    traces = driver.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer .trace")
    assert len(traces) == 6
    fills = driver.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer path.js-fill")
    assert fills and all(len(fill.get_attribute("d") or "") > 100 for fill in fills)
    lines = [
        line
        for line in driver.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer path.js-line")
        if line.value_of_css_property("stroke-width") != "0px"  # the area has no outline
    ]
    assert len(lines) == 4 and all(len(line.get_attribute("d") or "") > 100 for line in lines)
    scalings = [r for r in records if r.replicas != r.current_replicas]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chart-0 path.point")) == len(scalings)

    # Hover over the scale-up for the morning's highest forecast: its sentence shows.
    peak = max(
        (r for r in records if r.reason.startswith("ScaleUp/")), key=lambda r: r.forecast_peak or 0
    )
    row_id = f"decision-0-{records.index(peak)}"
    sentence = explain(peak, TZ)
    assert sentence.startswith("would have scaled ") and "p90 forecast for" in sentence
    point = marker(driver, row_id)
    ActionChains(driver).move_to_element(point).perform()
    label = WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#chart-0 .hoverlayer").text
    )
    # The label wraps lines at spaces, so compare without whitespace.
    assert re.sub(r"\s", "", sentence) in re.sub(r"\s", "", label)
    assert f"{peak.at.astimezone(ZoneInfo(TZ)):%H:%M}" in label
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(tmp_path / "review.png"))
    shutil.copyfile(tmp_path / "review.png", ARTIFACTS / "review.png")

    # Click it: the sentence, exactly, under the chart, and its row highlighted.
    ActionChains(driver).move_to_element(point).click().perform()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "why-0").text == sentence)
    selected = driver.find_elements(By.CSS_SELECTOR, "#table-0 tr.selected")
    assert [row.get_attribute("id") for row in selected] == [row_id]

    # The filters: by reason family, by applied, by a local time range.
    total = len(records)
    assert shown(driver) == (f"{total} of {total} decisions", total)
    reason = Select(driver.find_element(By.CSS_SELECTOR, "form.filters select[name=reason]"))
    reason.select_by_value("ScaleUp")
    ups = sum(1 for r in records if r.reason.startswith("ScaleUp/"))
    assert 0 < ups < total and shown(driver) == (f"{ups} of {total} decisions", ups)
    applied = Select(driver.find_element(By.CSS_SELECTOR, "form.filters select[name=applied]"))
    applied.select_by_value("yes")  # a replay only records: nothing was applied
    assert shown(driver) == (f"0 of {total} decisions", 0)
    applied.select_by_value("")
    reason.select_by_value("")
    set_time(driver, "from", "2026-11-10T09:00")
    set_time(driver, "until", "2026-11-10T09:30")
    assert shown(driver) == (f"30 of {total} decisions", 30)


@pytest.mark.parametrize(
    ("tz", "start", "bounds"),
    [
        # Berlin falls back at 03:00 CEST to 02:00 CET: 02:00-03:00 happens twice
        (
            "Europe/Berlin",
            "2026-10-24T23:00",
            ["2026-10-25T01:50", "2026-10-25T02:30", "2026-10-25T03:10"],
        ),
        # New York springs forward at 02:00 to 03:00, and falls back at 02:00 to 01:00
        (
            "America/New_York",
            "2026-03-08T06:00",
            ["2026-03-08T01:30", "2026-03-08T03:00", "2026-03-08T03:40"],
        ),
        (
            "America/New_York",
            "2026-11-01T04:30",
            ["2026-11-01T00:45", "2026-11-01T01:30", "2026-11-01T02:10"],
        ),
    ],
)
def test_time_filters_across_a_dst_change(
    browser: webdriver.Chrome, tmp_path: Path, tz: str, start: str, bounds: list[str]
) -> None:
    """A typed local time is read in the page's zone, the first of two in a repeated hour,
    and rows are compared as moments, so the filter keeps exactly the decisions between."""
    first = datetime.fromisoformat(start).replace(tzinfo=UTC)
    records = [sample(n, at=first + timedelta(minutes=10 * n)) for n in range(24)]
    page = tmp_path / "dst.html"
    page.write_text(review_page([SAMPLE_SCALER], {SAMPLE_SCALER: records}, since=first, tz=tz))
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer .trace")
    )
    zone = ZoneInfo(tz)
    for low, high in zip(bounds, bounds[1:], strict=False):
        set_time(browser, "from", low)
        set_time(browser, "until", high)
        rows = browser.find_elements(By.CSS_SELECTOR, "#table-0 tbody tr")
        kept = [n for n, row in enumerate(rows) if row.is_displayed()]
        since, until = (_moment(text, zone) for text in (low, high))
        assert kept == [n for n, r in enumerate(records) if since <= r.at < until], (low, high)


def _moment(text: str, zone: ZoneInfo) -> datetime:
    """A local wall time as a moment; in a repeated hour, the first of the two (fold 0)."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def test_until_at_its_latest_keeps_the_last_decision(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """The picker's latest "until" was the last decision's minute, and "until" is
    exclusive, so no range the picker allowed could keep the last decision."""
    first = datetime(2026, 11, 20, 9, 0, 30, tzinfo=UTC)
    records = [sample(n, at=first + timedelta(minutes=n)) for n in range(5)]
    page = tmp_path / "until.html"
    page.write_text(review_page([SAMPLE_SCALER], {SAMPLE_SCALER: records}, since=first))
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer .trace")
    )
    fields = {
        name: browser.find_element(By.CSS_SELECTOR, f"form.filters input[name={name}]")
        for name in ("from", "until")
    }
    set_time(browser, "from", fields["from"].get_attribute("min") or "")
    set_time(browser, "until", fields["until"].get_attribute("max") or "")
    assert shown(browser) == ("5 of 5 decisions", 5)


def test_gaps_and_a_scaler_without_forecasts_in_chromium(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """Two hours without decisions, decisions without a usable forecast among others, and
    a scaler that never had one: no script error, and the forecast's area is one shape per
    stretch with a forecast (``fill="tozeroy"`` had filled across every gap)."""
    stale = dict(reason="FallbackReactive/ForecastStale", forecast_peak=None, predictive=None)
    portal = [sample(n, **(stale if n in (2, 3) else {})) for n in range(6)]  # type: ignore[arg-type]
    portal += [sample(n) for n in range(126, 130)]
    blind = [sample(n, scaler="prod/blind", **stale) for n in range(20)]  # type: ignore[arg-type]
    page = tmp_path / "gaps.html"
    page.write_text(
        review_page(
            [SAMPLE_SCALER, "prod/blind"],
            {SAMPLE_SCALER: portal, "prod/blind": blind},
            since=T0,
            tz="Europe/Berlin",
        )
    )
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-1 .scatterlayer .trace")
    )
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    (area,) = browser.find_elements(By.CSS_SELECTOR, "#chart-0 .scatterlayer path.js-fill")
    assert (area.get_attribute("d") or "").count("Z") == 3  # 09:00-01, 09:04-05, 11:06-09
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-1 .scatterlayer path.js-fill") == []
    markers = browser.find_elements(By.CSS_SELECTOR, "#chart-1 .scatterlayer path.point")
    assert len(markers) == 20
