"""README's promises: CI runs README's test command; the documented flags exist."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_test_command_written_in_readme():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest"
    assert f"./install.sh --test && {command}" in readme
    assert "./install.sh --test" in ci and command in ci


def test_documented_flags_exist():
    import contextlib
    import io

    from soundsight.flows.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["render", "--help"])
    for flag in ("--segment.mode", "--segment.seed", "--render.width", "--render.fps", "--output.force", "--demo"):
        assert flag in out.getvalue(), flag
