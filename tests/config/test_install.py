"""What `make install` and `make test` rely on: a hashed lock file that satisfies pyproject.toml,
and a Chromium step that installs the browser or stops, naming the command."""
from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
ENSURE_CHROMIUM = ROOT / "scripts" / "ensure-chromium"


def locked() -> dict[str, tuple[Version, int]]:
    """Each pinned distribution: its version and how many hashes the lock gives for it."""
    pins: dict[str, tuple[Version, int]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        found = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", entry)
        if found:
            pins[canonicalize_name(found[1])] = (Version(found[2]), entry.count("--hash=sha256:"))
    return pins


def test_the_lock_pins_every_dependency_of_pyproject_in_range_and_hashed() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    pins = locked()
    assert len(pins) > len(wanted)  # their own dependencies are pinned too
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {LOCK.name}: run `make lock`"
        version, _ = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside {requirement}: run `make lock`")
    assert all(hashes > 0 for _, hashes in pins.values())


def test_the_installed_set_is_the_locked_set() -> None:
    from importlib.metadata import distributions

    installed: dict[str, Version] = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in distributions()}
    pins = locked()
    for name, (version, _) in pins.items():
        if name in installed:  # a marker may leave one out (colorama on Windows)
            assert installed[name] == version, f"{name} {installed[name]} installed, {version} locked: make install"


def make_dry_run(*arguments: str) -> str:
    # A make that runs this suite (make test PYTEST_ARGS=…) passes its variables down through
    # MAKEFLAGS; the dry run must see the Makefile as a person's shell would.
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTEST_ARGS")}
    done = subprocess.run(["make", "-n", *arguments], cwd=ROOT, capture_output=True, text=True, check=True,
                          env=clean)
    return done.stdout


def test_make_test_makes_sure_of_chromium_before_pytest_unless_browser_tests_are_skipped() -> None:
    lines = make_dry_run("test").splitlines()
    assert "scripts/ensure-chromium" in lines
    assert lines.index("scripts/ensure-chromium") < next(i for i, line in enumerate(lines) if "pytest" in line)
    assert "ensure-chromium" not in make_dry_run("test", "PYTEST_ARGS=-m 'not browser'")


def test_make_install_installs_only_the_hashed_lock() -> None:
    commands = make_dry_run("-B", "install")
    assert "pip install --quiet --require-hashes -r requirements/lock.txt" in commands
    assert "pip install --quiet --no-deps -e ." in commands


def as_a_user_who_cannot_install() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def test_without_chromium_and_root_make_test_stops_naming_the_one_command(tmp_path: Path) -> None:
    # The script on standard input, so that user need not be able to reach the checkout.
    with ENSURE_CHROMIUM.open("rb") as script:
        done = subprocess.run([*as_a_user_who_cannot_install(), "bash", "-s"], stdin=script, capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "CHROMIUM": str(tmp_path / "chromium")}, cwd="/",
                              timeout=30)
    assert done.returncode == 1
    assert "sudo apt-get install -y chromium fonts-dejavu-core" in done.stderr
    assert "Installing" not in done.stdout


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="checks a machine that has Chromium")
def test_with_chromium_present_the_step_does_nothing() -> None:
    done = subprocess.run([str(ENSURE_CHROMIUM)], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
