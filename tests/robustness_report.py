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
    report = outcome.get_result()
    mark = item.get_closest_marker("robustness")
    if mark is None:
        return
    row = _ROWS.setdefault(item.nodeid, {"what": mark.kwargs["what"], "outcome": mark.kwargs["outcome"],
                                         "test": item.nodeid.split("::", 1)[-1], "result": "passed"})  # fmt: skip
    if report.failed:
        row["result"] = "FAILED"
    elif report.skipped and report.when == "setup":
        row["result"] = "skipped"


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("TESTS_ROBUSTNESS_DOC")
    if not target or not _ROWS:
        return
    lines = [HEADER.format(count=len(_ROWS), date=datetime.date.today().isoformat())]
    for row in _ROWS.values():
        lines.append(f"| {row['what']} | {row['outcome']} | `{row['test']}` | {row['result']} |\n")
    Path(target).write_text("".join(lines))
