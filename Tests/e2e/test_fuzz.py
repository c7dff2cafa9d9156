"""A bounded libFuzzer run of every harness under Fuzz/ (scripts/fuzz), as part of the suite.

Each harness runs for FUZZ_SECONDS (default 20) from its seed corpus, which holds the inputs of
crashes found before (Fuzz/corpus/NAME/regression-*): a bug that comes back fails at once. The test
is skipped only when this toolchain cannot build a libFuzzer binary at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import REPO_ROOT

SECONDS_PER_HARNESS = int(os.environ.get("FUZZ_SECONDS", "20"))


def swiftc() -> str:
    found = shutil.which("swiftc")
    if found:
        return found
    if Path("/opt/swift/usr/bin/swiftc").exists():
        return "/opt/swift/usr/bin/swiftc"
    pytest.fail("swiftc is not installed (neither on PATH nor at /opt/swift/usr/bin)")


def toolchain_builds_fuzzers(tmp_path: Path) -> tuple[bool, str]:
    """Whether `swiftc -sanitize=fuzzer,address` links a trivial harness here."""
    source = tmp_path / "probe.swift"
    source.write_text('@_cdecl("LLVMFuzzerTestOneInput")\n'
                      "public func probe(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt { 0 }\n")
    result = subprocess.run([swiftc(), "-sanitize=fuzzer,address", "-parse-as-library", str(source),
                             "-o", str(tmp_path / "probe")], capture_output=True, text=True, timeout=120)
    return result.returncode == 0, result.stderr[-2000:]


def test_every_fuzzing_harness_runs_without_a_crash(tmp_path):
    can_build, why = toolchain_builds_fuzzers(tmp_path)
    if not can_build:
        pytest.skip(f"this Swift toolchain cannot build libFuzzer binaries (-sanitize=fuzzer): {why}")
    harnesses = sorted(p.name for p in (REPO_ROOT / "Fuzz").iterdir() if p.is_dir() and p.name != "corpus")
    assert len(harnesses) >= 4, harnesses

    env = {**os.environ, "PATH": f"{Path(swiftc()).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(REPO_ROOT / "scripts" / "fuzz"), str(SECONDS_PER_HARNESS)], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=env,
                            timeout=600 + SECONDS_PER_HARNESS * len(harnesses) * 2)
    print(result.stdout)

    assert result.returncode == 0, (
        f"scripts/fuzz {SECONDS_PER_HARNESS} failed (exit {result.returncode}); each crash is written under "
        f".build/fuzz/artifacts/NAME/ and reproduces with `.build/fuzz/bin/NAME FILE`:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    for name in harnesses:
        assert f"== fuzz: {name} for {SECONDS_PER_HARNESS}s ==" in result.stdout, result.stdout
