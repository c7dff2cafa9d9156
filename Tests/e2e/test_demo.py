"""scripts/demo.py, which the README's first command runs, keeps working (with the debug build)."""

from __future__ import annotations

import re
import subprocess
import sys

from harness import REPO_ROOT, router_binary


def test_demo_spreads_its_requests_over_both_resources_and_stops_cleanly():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--routerctl", str(router_binary())],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"^Summary: a: (\d+), b: (\d+)$", result.stdout, re.MULTILINE)
    assert summary, result.stdout
    assert int(summary.group(1)) + int(summary.group(2)) == 10
    # config.example.yaml balances round-robin: the two resources share the ten requests evenly.
    assert (int(summary.group(1)), int(summary.group(2))) == (5, 5), result.stdout
    assert "the router exited with 0" in result.stdout
