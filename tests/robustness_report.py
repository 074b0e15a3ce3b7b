"""Writes docs/robustness.md from the tests marked ``robustness(what=..., outcome=...)``.

Registered in conftest.py. Runs only when TESTS_ROBUSTNESS_DOC names the file to write, e.g.

    TESTS_ROBUSTNESS_DOC=docs/robustness.md .venv/bin/python -m pytest tests/test_robustness.py \\
        tests/test_deployments.py tests/test_integrity.py tests/test_what_users_read.py tests/test_network_exposure.py
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

_ROWS: dict[str, dict] = {}
_PROPERTY = "robustness"  # the row travels on the test's report, so under pytest-xdist it reaches the controller

HEADER = """# Robustness: what a user can do wrong, and what soundsight does

Generated from the tests marked `robustness` ({count} cases; the last column is that test's result on
{date}). Regenerate: `TESTS_ROBUSTNESS_DOC=docs/robustness.md .venv/bin/python -m pytest
tests/test_robustness.py tests/test_deployments.py tests/test_integrity.py tests/test_what_users_read.py
tests/test_network_exposure.py`. Every case is its own test, so one failure never hides another.

| what the user does | what happens | test | result |
|---|---|---|---|
"""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    mark = item.get_closest_marker("robustness")
    if mark is not None:
        # The test's name without the "@group" pytest-xdist's loadgroup appends to node ids.
        test = item.nodeid.split("::", 1)[-1].split("@", 1)[0]
        row = {"what": mark.kwargs["what"], "outcome": mark.kwargs["outcome"], "test": test,
               "order": item.session.items.index(item)}  # fmt: skip
        outcome.get_result().user_properties.append((_PROPERTY, row))


def pytest_runtest_logreport(report):
    """Runs where results are gathered: this process, or the xdist controller."""
    for name, row in report.user_properties:
        if name != _PROPERTY:
            continue
        row = _ROWS.setdefault(row["test"], {**row, "result": "passed"})
        if report.failed:
            row["result"] = "FAILED"
        elif report.skipped and report.when == "setup":
            row["result"] = "skipped"


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("TESTS_ROBUSTNESS_DOC")
    if not target or not _ROWS or hasattr(session.config, "workerinput"):
        return
    lines = [HEADER.format(count=len(_ROWS), date=datetime.date.today().isoformat())]
    for row in sorted(_ROWS.values(), key=lambda row: row["order"]):  # the order tests were collected in
        lines.append(f"| {row['what']} | {row['outcome']} | `{row['test']}` | {row['result']} |\n")
    Path(target).write_text("".join(lines))
