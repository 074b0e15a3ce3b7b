"""Deliberate copies stay identical to their sources (the diffusers ``# Copied from`` way).

Where two places must hold the same thing but one cannot import the other's definition (a
benchmark's --tiny stand-in sizes, written out beside the real ones, copied from the test suite's
fixtures), the copy carries ``# Copied from <module>.<function>`` and a test here fails as soon as
either side changes alone. Every such marker outside tests/ must have its test in `COPIES`.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import textwrap
from pathlib import Path

from benchmarks.gpu.wan_bench_lib import MOCHI_TINY_TRANSFORMER, WAN_TINY_TRANSFORMER
from tests import video_fixtures

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"#\s*Copied from\s+([\w.]+)")


def call_kwargs(function, callee: str, **names) -> dict:
    """The keyword arguments of the call to `callee` in `function`'s source, evaluated with `names` in scope."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == callee:
            return {
                kw.arg: eval(compile(ast.Expression(kw.value), "<argument>", "eval"), {}, dict(names))
                for kw in node.keywords
                if kw.arg is not None
            }
    raise AssertionError(f"{function.__qualname__} calls no {callee}")


def test_mochi_tiny_transformer_is_the_test_suites():
    # benchmarks/gpu/wan_bench_lib.py: Copied from tests.video_fixtures.build_tiny_mochi
    assert call_kwargs(video_fixtures.build_tiny_mochi, "MochiTransformer3DModel") == MOCHI_TINY_TRANSFORMER


def test_wan_tiny_transformer_has_the_test_suites_sizes():
    # The real 1.3B config with the suite's tiny sizes: every argument of the suite's tiny Wan (at its
    # defaults: 16 channels, 2 layers) and eps, which the suite leaves at diffusers' default 1e-6.
    suite = call_kwargs(video_fixtures._tiny_wan_transformer, "getattr(diffusers, cls_name)", channels=16, extra={})
    assert {k: WAN_TINY_TRANSFORMER[k] for k in suite} == suite
    assert {k: v for k, v in WAN_TINY_TRANSFORMER.items() if k not in suite} == {"eps": 1e-6}


COPIES = {"tests.video_fixtures.build_tiny_mochi": test_mochi_tiny_transformer_is_the_test_suites}


def test_every_marked_copy_is_tested():
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py", "*.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    marked = {
        match.group(1)
        for name in files
        if not name.startswith("tests/") and (ROOT / name).is_file()
        for match in MARKER.finditer((ROOT / name).read_text(encoding="utf-8", errors="replace"))
    }
    assert marked == set(COPIES)
