"""`routerctl check CONFIG`: the configurations the tests use are valid; a typo is reported with
the file and line where it is."""

from __future__ import annotations

import subprocess

import pytest

from harness import COMPONENT, COMPONENT_SECRET, router_binary, router_config_yaml


def check(path) -> subprocess.CompletedProcess:
    if not router_binary().exists():
        pytest.fail(f"{router_binary()} does not exist; run `swift build` first (or set ROUTERCTL)")
    return subprocess.run([str(router_binary()), "check", str(path)],
                          capture_output=True, text=True, timeout=30)


def test_check_accepts_the_configuration_the_tests_use(tmp_path):
    path = tmp_path / "router.yaml"
    path.write_text(router_config_yaml(COMPONENT, 5347, COMPONENT_SECRET, "service@localhost"))

    result = check(path)

    assert result.returncode == 0, result.stdout + result.stderr


def test_check_reports_a_misspelled_key_with_its_file_and_line(tmp_path):
    path = tmp_path / "router.yaml"
    text = router_config_yaml(COMPONENT, 5347, COMPONENT_SECRET, "service@localhost")
    assert "    request_timeout:" in text
    path.write_text(text.replace("    request_timeout:", "    request_timout:"))
    line = 1 + text.splitlines().index(next(l for l in text.splitlines() if "request_timeout" in l))

    result = check(path)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{path}:{line}" in output, output
    assert "request_timout" in output, output
