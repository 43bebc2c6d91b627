"""Start the emulator as a real subprocess for tests, demos and the benchmark."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from requests import RequestException

from .client import EmulatorClient

REPO_ROOT = Path(__file__).resolve().parents[1]
START_ATTEMPTS = 3


class EmulatorDidNotStart(RuntimeError):
    pass


@contextmanager
def run_emulator(
    *, cpu: int | None = None, startup_timeout: float = 15.0, **options: Any
) -> Iterator[EmulatorClient]:
    """Run `python -m segment_emulator` on two free ports; yield a client.

    `options` become command-line flags (`max_events=10` is `--max-events 10`);
    `register={"KEY": "eu"}` becomes `--register KEY:eu`. `cpu` pins the emulator to one
    core with taskset. The process is terminated when the block exits.
    """
    options.setdefault("log_level", "warning")
    with tempfile.TemporaryDirectory(prefix="segment-emulator-") as directory:
        process, client = _start(options, cpu, startup_timeout, Path(directory) / "emulator.log")
        try:
            yield client
        finally:
            client.close()
            _stop(process)


def emulator_command(us_port: int, eu_port: int, options: Mapping[str, Any], cpu: int | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "segment_emulator",
        "--host",
        "127.0.0.1",
        "--us-port",
        str(us_port),
        "--eu-port",
        str(eu_port),
    ]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if name == "register":
            items = value.items() if isinstance(value, Mapping) else value
            for write_key, region in items:
                command += [flag, f"{write_key}:{region}"]
        elif isinstance(value, (list, tuple)):  # a repeatable flag, such as public_token
            for item in value:
                command += [flag, str(item)]
        elif value is not None:
            command += [flag, str(value)]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    return command


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start(
    options: Mapping[str, Any], cpu: int | None, timeout: float, output: Path
) -> tuple[subprocess.Popen[bytes], EmulatorClient]:
    # Another process may grab a port between free_ports() and the emulator's bind; try again.
    for attempt in range(1, START_ATTEMPTS + 1):
        us_port, eu_port = free_ports(2)
        with output.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and flags
                emulator_command(us_port, eu_port, options, cpu),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=_environment(),
            )
        us_url, eu_url = f"http://127.0.0.1:{us_port}", f"http://127.0.0.1:{eu_port}"
        client = EmulatorClient(us_url, us_url=us_url, eu_url=eu_url)
        try:
            _wait_until_ready(process, client, timeout, output)
            return process, client
        except EmulatorDidNotStart:
            client.close()
            _stop(process)
            if attempt == START_ATTEMPTS or "address already in use" not in _read(output).lower():
                raise
    raise AssertionError("unreachable")


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    paths = [str(REPO_ROOT), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return environment


def _wait_until_ready(
    process: subprocess.Popen[bytes], client: EmulatorClient, timeout: float, output: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorDidNotStart(f"emulator exited with {process.returncode}:\n{_read(output)}")
        try:
            # Both listeners must answer, not only the first one to bind.
            with closing(EmulatorClient(client.eu_url)) as eu_client:
                eu_client.health()
            client.health()
            return
        except RequestException:
            time.sleep(0.05)
    raise EmulatorDidNotStart(f"emulator did not answer within {timeout} s:\n{_read(output)}")


def _read(output: Path) -> str:
    return output.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
