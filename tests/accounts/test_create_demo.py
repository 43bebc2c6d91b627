"""`make run`'s demo tells the truth: create_demo prints the address the site is at, and every
emulator a developer starts (`make run`'s Procfile.dev, `make emulator`) knows the demo keys it
prints."""
from __future__ import annotations

import shlex
import subprocess
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from integrations.management.commands.create_demo import DEMO_KEYS
from segment_emulator.client import EmulatorClient
from segment_emulator.testing import free_ports

ROOT = Path(__file__).resolve().parents[2]


def registered(command: list[str]) -> dict[str, str]:
    """The `--register KEY:REGION` flags of an emulator command line."""
    flags = [command[i + 1] for i, word in enumerate(command) if word == "--register"]
    return {key: region for key, _, region in (flag.rpartition(":") for flag in flags)}


def make_emulator_command() -> list[str]:
    done = subprocess.run(["make", "-n", "emulator"], cwd=ROOT, capture_output=True, text=True, check=True)
    return shlex.split(next(line for line in done.stdout.splitlines() if "segment_emulator" in line))


@pytest.mark.django_db
def test_create_demo_prints_the_address_from_site_url(settings: Any) -> None:
    settings.SITE_URL = "http://127.0.0.1:8123"
    out = StringIO()
    call_command("create_demo", stdout=out)
    printed = out.getvalue()
    assert "Tributary is starting on http://127.0.0.1:8123\n" in printed
    assert "Operator admin: http://127.0.0.1:8123/admin/" in printed
    assert ":8000" not in printed
    assert f"write key {DEMO_KEYS['eu']}, region EU" in printed


def test_make_run_and_make_emulator_register_the_demo_keys() -> None:
    procfile = next(line for line in (ROOT / "Procfile.dev").read_text().splitlines() if line.startswith("emulator:"))
    demo = {key: region for region, key in DEMO_KEYS.items()}
    assert registered(shlex.split(procfile.split(":", 1)[1])) == demo
    assert registered(make_emulator_command()) == demo


def test_the_emulator_make_emulator_starts_knows_the_demo_eu_key() -> None:
    """`make emulator`'s own command line, on free ports instead of 9100 and 9101."""
    command = make_emulator_command()
    us_port, eu_port = free_ports(2)
    command[command.index("--us-port") + 1] = str(us_port)
    command[command.index("--eu-port") + 1] = str(eu_port)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = EmulatorClient(f"http://127.0.0.1:{us_port}", us_url=f"http://127.0.0.1:{us_port}",
                            eu_url=f"http://127.0.0.1:{eu_port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the emulator exited"
            try:
                keys = client.keys()
                break
            except OSError:
                assert time.monotonic() < deadline, "the emulator did not answer"
                time.sleep(0.1)
        assert keys == {DEMO_KEYS["us"]: "us", DEMO_KEYS["eu"]: "eu"}
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
