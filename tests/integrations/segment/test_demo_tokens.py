"""`make run` and `make emulator` start the emulator with the Public API tokens create_demo prints."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from integrations.management.commands.create_demo import (
    DEMO_PUBLIC_API_TOKEN,
    DEMO_READ_ONLY_PUBLIC_API_TOKEN,
    DEMO_US_PUBLIC_API_TOKEN,
)

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = {DEMO_PUBLIC_API_TOKEN: ("owner", "eu"), DEMO_READ_ONLY_PUBLIC_API_TOKEN: ("read_only", "eu"),
            DEMO_US_PUBLIC_API_TOKEN: ("owner", "us")}


def tokens(command: list[str]) -> dict[str, tuple[str, str]]:
    flags = [command[i + 1] for i, word in enumerate(command) if word == "--public-token"]
    return {token: (role, region) for token, role, region in (flag.rsplit(":", 2) for flag in flags)}


def test_make_run_and_make_emulator_know_the_demo_tokens() -> None:
    procfile = next(line for line in (ROOT / "Procfile.dev").read_text().splitlines() if line.startswith("emulator:"))
    assert tokens(shlex.split(procfile.split(":", 1)[1])) == EXPECTED
    done = subprocess.run(["make", "-n", "emulator"], cwd=ROOT, capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if "segment_emulator" in line)
    assert tokens(shlex.split(line)) == EXPECTED
