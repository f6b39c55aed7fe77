"""The public busy-hours feed (:mod:`controller.feed`) over HTTP, and its widget in a real
browser (headless Debian Chromium driven by Selenium, as in the review page's tests).

The feed serves what the leader wrote to a scaler's ``status.outlook``; here that status is
made from a known week of ratings, and the server's clock is fixed at 00:20 on Sunday
15 November in Shanghai, so the hour under way is the first one shown.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.by import By

from controller.feed import CACHE_SECONDS, FeedServer, respond
from controller.outlook import Ratings
from tests.test_review_browser import browser  # noqa: F401 (the fixture)

ZONE = "Asia/Shanghai"
START = pd.Timestamp("2026-11-14T16:00:00Z")  # 00:00 on Sunday 15 November in Shanghai
CLOCK = datetime(2026, 11, 14, 16, 20, tzinfo=UTC)


def day_codes(weekday: int) -> str:
    """Ratings of one local day: office-hour peaks on working days, calm weekends."""
    if weekday >= 5:
        return "q" * 8 + "n" * 13 + "q" * 3
    return "q" * 7 + "nn" + "bbb" + "nn" + "bbb" + "nnnnn" + "qq"


CODES = "".join(day_codes((6 + day) % 7) for day in range(7))  # Sunday first
RATED = {"q": "quiet", "n": "normal", "b": "busy"}


def scaler(public: bool = True, numbers: bool = False, outlook: bool = True) -> dict[str, Any]:
    ratings = Ratings(
        CLOCK - timedelta(minutes=20),
        START,
        tuple(RATED[c] for c in CODES),
        tuple(float(n) for n in range(len(CODES))) if numbers else None,
    )
    return {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"namespace": "gov", "name": "portal", "generation": 1},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "portal"},
            "maxReplicas": 20,
            "metric": {"prometheusUrl": "http://prometheus:9090", "query": "sum(rate(x[2m]))"},
            "capacityPerReplica": 50,
            "model": {"name": "auto", "params": {"tz": ZONE}},
            "feed": {"public": public, "showNumbers": numbers},
        },
        "status": {"outlook": {**ratings.to_status(), "hoursAtRisk": 3}} if outlook else {},
    }


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    """The scalers the controller has seen, as its watch keeps them."""
    return {"gov/portal": scaler()}


@pytest.fixture(scope="module")
def base(objects: dict[str, dict[str, Any]]) -> Iterator[str]:
    server = FeedServer(objects.get, "127.0.0.1", 0, clock=lambda: CLOCK).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def get(base: str, path: str, **headers: str) -> requests.Response:
    return requests.get(base + path, headers=headers, timeout=10)


# -- the document ------------------------------------------------------------------------------


def test_the_json_document_rates_every_coming_hour_in_local_time(base: str) -> None:
    answer = get(base, "/feeds/gov/portal.json?lang=zh")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    feed = answer.json()
    assert set(feed) == {"generatedAt", "timeZone", "language", "labels", "hours", "quietWindows"}
    assert (feed["timeZone"], feed["language"]) == (ZONE, "zh")
    assert feed["labels"] == {"quiet": "空闲", "normal": "一般", "busy": "繁忙"}
    assert len(feed["hours"]) == 7 * 24
    assert feed["hours"][0] == {
        "start": "2026-11-15T00:00:00+08:00",
        "rating": "quiet",
        "label": "空闲",
    }
    assert feed["hours"][24 + 9] == {
        "start": "2026-11-16T09:00:00+08:00",
        "rating": "busy",
        "label": "繁忙",
    }
    assert [h["rating"][0] for h in feed["hours"]] == list(CODES)
    assert feed["quietWindows"] == [
        {
            "start": "2026-11-15T07:00:00+08:00",
            "end": "2026-11-15T08:00:00+08:00",
            "text": "11月15日 周日 07:00–08:00",
        },
        {
            "start": "2026-11-15T21:00:00+08:00",
            "end": "2026-11-15T22:00:00+08:00",
            "text": "11月15日 周日 21:00–22:00",
        },
        {  # working days have no quiet daytime hour
            "start": "2026-11-21T07:00:00+08:00",
            "end": "2026-11-21T08:00:00+08:00",
            "text": "11月21日 周六 07:00–08:00",
        },
    ]
    text = answer.text
    assert "expected" not in text and "hoursAtRisk" not in text and "replica" not in text


@pytest.mark.parametrize(
    ("query", "accept", "lang", "busy"),
    [
        ("", "zh-CN,zh;q=0.9,en;q=0.8", "zh", "繁忙"),
        ("", "en-GB,en;q=0.9", "en", "Busy"),
        ("?lang=en", "zh-CN", "en", "Busy"),
        ("", "", "en", "Busy"),
    ],
)
def test_the_language_follows_lang_then_accept_language(
    base: str, query: str, accept: str, lang: str, busy: str
) -> None:
    feed = get(base, f"/feeds/gov/portal.json{query}", **{"Accept-Language": accept}).json()
    assert feed["language"] == lang and feed["labels"]["busy"] == busy


def test_answers_are_cacheable_and_conditional_requests_get_304(base: str) -> None:
    first = get(base, "/feeds/gov/portal.json?lang=zh")
    assert first.headers["Cache-Control"] == f"public, max-age={CACHE_SECONDS}"
    assert first.headers["Vary"] == "Accept-Language"
    assert first.headers["Last-Modified"] == "Sat, 14 Nov 2026 16:00:00 GMT"
    etag = first.headers["ETag"]
    again = get(base, "/feeds/gov/portal.json?lang=zh", **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    since = get(
        base,
        "/feeds/gov/portal.json?lang=zh",
        **{"If-Modified-Since": first.headers["Last-Modified"]},
    )
    assert since.status_code == 304
    older = get(
        base,
        "/feeds/gov/portal.json?lang=zh",
        **{"If-Modified-Since": "Sat, 14 Nov 2026 15:00:00 GMT"},
    )
    assert older.status_code == 200
    assert get(base, "/feeds/gov/portal.json?lang=en").headers["ETag"] != etag
    assert (
        get(base, "/feeds/gov/portal.json?lang=zh", **{"If-None-Match": '"other"'}).status_code
        == 200
    )


def test_an_hour_later_the_past_hour_is_gone_and_the_answer_is_newer() -> None:
    obj = scaler()
    later = respond(lambda key: obj, "/feeds/gov/portal.json", {}, CLOCK + timedelta(hours=1))
    feed = json.loads(later.body)
    assert feed["hours"][0]["start"] == "2026-11-15T01:00:00+08:00" and len(feed["hours"]) == 167
    assert later.headers["Last-Modified"] == "Sat, 14 Nov 2026 17:00:00 GMT"


@pytest.mark.parametrize(
    ("obj", "path", "status"),
    [
        (scaler(public=False), "/feeds/gov/portal.json", 404),  # private: as if unknown
        (scaler(), "/feeds/gov/other.json", 404),
        (scaler(), "/feeds/gov", 404),
        (scaler(), "/metrics", 404),
        (scaler(outlook=False), "/feeds/gov/portal.json", 503),  # public, not ready yet
        (scaler(outlook=False), "/feeds/gov/portal", 503),
    ],
)
def test_only_public_scalers_with_an_outlook_are_served(
    obj: dict[str, Any], path: str, status: int
) -> None:
    objects = {"gov/portal": obj}
    answer = respond(objects.get, path, {}, CLOCK)
    assert answer.status == status
    assert answer.headers["Cache-Control"] == "no-store"


def test_an_invalid_spec_is_not_served() -> None:
    obj = copy.deepcopy(scaler())
    obj["spec"]["maxReplicas"] = 0
    assert respond(lambda key: obj, "/feeds/gov/portal.json", {}, CLOCK).status == 404


def test_numbers_only_when_the_spec_allows_them() -> None:
    obj = scaler(numbers=True)
    feed = json.loads(respond(lambda key: obj, "/feeds/gov/portal.json", {}, CLOCK).body)
    assert [h["expected"] for h in feed["hours"][:3]] == [0.0, 1.0, 2.0]
    widget = respond(lambda key: obj, "/feeds/gov/portal", {}, CLOCK).body.decode()
    assert "title='Sun 15 Nov 00:00 Quiet (0)'" in widget


def test_head_answers_headers_only(base: str) -> None:
    answer = requests.head(base + "/feeds/gov/portal", timeout=10)
    assert answer.status_code == 200 and answer.content == b""
    assert int(answer.headers["Content-Length"]) > 1000
    assert "script-src" not in answer.headers["Content-Security-Policy"]  # none allowed


# -- the widget in a browser ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lang", "labels", "first_window", "first_day"),
    [
        ("zh", ["空闲", "一般", "繁忙"], "11月15日 周日 07:00–08:00", "11月15日 周日"),
        ("en", ["Quiet", "Normal", "Busy"], "Sun 15 Nov 07:00–08:00", "Sun 15 Nov"),
    ],
)
def test_the_widget_shows_the_ratings(
    browser: webdriver.Chrome,  # noqa: F811
    base: str,
    lang: str,
    labels: list[str],
    first_window: str,
    first_day: str,
) -> None:
    browser.get(f"{base}/feeds/gov/portal?lang={lang}")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
    cells = browser.find_elements(By.CSS_SELECTOR, "td[data-rating]")
    assert [c.get_attribute("data-rating")[0] for c in cells] == list(CODES)
    assert cells[24 + 10].get_attribute("data-start") == "2026-11-16T10:00:00+08:00"
    assert cells[24 + 10].get_attribute("textContent") == labels[2]  # read out by screen readers
    colours = {
        rating: {
            c.value_of_css_property("background-color")
            for c in cells
            if c.get_attribute("data-rating") == rating
        }
        for rating in ("quiet", "normal", "busy")
    }
    assert all(len(shades) == 1 for shades in colours.values())
    assert len({next(iter(shades)) for shades in colours.values()}) == 3  # told apart by colour
    legend = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ul.legend .label")]
    assert legend == labels
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody th[scope=row]")
    assert rows[0].text == first_day and len(rows) == 7
    windows = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ol.quiet-windows li")]
    assert windows[0] == first_window and len(windows) == 3
    assert browser.execute_script("return document.scripts.length") == 0


def test_the_controller_serves_the_feed_on_a_port_of_its_own() -> None:
    from typer.main import get_command

    from controller.cli import app

    run = get_command(app).commands["controller"].commands["run"]  # type: ignore[attr-defined]
    (option,) = [p for p in run.params if "--feed-port" in p.opts]
    assert option.default is None  # off unless asked for
    assert "--port" in {o for p in run.params for o in p.opts}  # /metrics stays apart
