"""Hostile text in what people read: names, reasons and messages that hold markup, quotes,
control characters or spreadsheet formulas, in the review page, the plain-language account,
the public feed and the controller's HTTP endpoints."""

from __future__ import annotations

import html

from controller.review import review_page
from tests.test_decisions import T0, sample

EVIL = '</script><script>alert(1)</script><img src=x onerror="alert(1)">'


def test_review_table_escapes_the_recorded_reason_a_decision_was_not_applied() -> None:
    # The applied column shows the reason recorded in the log's not_applied column; it was
    # written into the table unescaped, so a log holding markup there ran it in the page.
    record = sample(0, not_applied=f"Conflicting{EVIL}: words", applied=False)
    text = review_page([record.scaler], {record.scaler: [record]}, since=T0)
    assert EVIL not in text
    assert f"<td>no (Conflicting{html.escape(EVIL)})</td>" in text
