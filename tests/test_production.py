"""The production recipe works as written: the Procfile's release, web, worker and beat, started
by honcho from an environment holding only the variables the README lists (and PATH), serve the
login page and its static files, accept an event through the ingest API and store it, and the
worker runs what beat schedules."""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
from django.conf import settings

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest.keys import ingest_key_create
from integrations.models import Event
from tests.integrations.relay.processes import REPO_ROOT, database_url, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BIN = Path(sys.executable).parent
START_TIMEOUT = 90.0
# What a proxy in front of the web server adds: production settings redirect plain HTTP to HTTPS.
BEHIND_THE_PROXY = {"X-Forwarded-Proto": "https"}


def production_environment(tmp_path: Path, port: int) -> dict[str, str]:
    """The README's variables for production, and nothing else of this process's environment.
    TRIBUTARY_DATA_DIR and WEB_BIND keep the run inside the test's folder and on 127.0.0.1."""
    from config.celery_app import app

    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # the installed project, as an activated venv
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "DATABASE_URL": database_url(),
        "SITE_URL": f"http://127.0.0.1:{port}",
        "EMAIL_URL": "consolemail://",
        "TRIBUTARY_DATA_DIR": str(tmp_path / "data"),
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "WEB_ACCESS_LOG": "true",
        "CELERY_WORKER_CONCURRENCY": "2",
    }
    broker = str(app.conf.broker_url)
    if broker.startswith("redis://"):
        # The broker and a cache shared by every web process, as production runs them.
        env.update({"CELERY_BROKER_URL": broker, "CACHE_URL": broker})
    # Otherwise the embedded default: the filesystem broker under TRIBUTARY_DATA_DIR.
    return env


class Honcho:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process, self.log = process, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"honcho exited with {self.process.returncode}\n{self.output()}")
        return True

    def stop(self) -> None:
        """SIGTERM to honcho, which stops each process (each in a session of its own); then
        SIGKILL for any of them still there."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        for pid in re.findall(r"started \(pid=(\d+)\)", self.output()):
            with suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def honcho(*arguments: str) -> list[str]:
    # -e /dev/null: a developer's .env (read by default) must not fill any gap.
    return [str(BIN / "honcho"), "--env", "/dev/null", "--procfile", "Procfile", *arguments]


@contextmanager
def procfile(tmp_path: Path, env: dict[str, str], *processes: str) -> Iterator[Honcho]:
    log = tmp_path / "honcho.log"
    with log.open("wb") as output:
        process = subprocess.Popen(honcho("start", *processes), cwd=REPO_ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    started = Honcho(process, log)
    try:
        yield started
    finally:
        started.stop()


def login_page(url: str) -> requests.Response | None:
    try:
        return requests.get(f"{url}/account/login/", headers=BEHIND_THE_PROXY, timeout=(2, 30),
                            allow_redirects=False)
    except requests.ConnectionError:
        return None


def test_the_procfile_serves_pages_and_takes_events_from_the_readme_variables_alone(
        tmp_path: Path, alice: User, workspace: Workspace) -> None:
    _, ingest_key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Production recipe")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = production_environment(tmp_path, port)

    release = subprocess.run(honcho("start", "release"), cwd=REPO_ROOT, env=env, capture_output=True,
                             text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert release.returncode == 0, release.stdout + release.stderr
    assert "release.1 stopped (rc=0)" in release.stdout

    with procfile(tmp_path, env, "web", "worker", "beat") as stack:
        wait_for(lambda: stack.running() and login_page(url) is not None, START_TIMEOUT, "the web answering",
                 logs=stack.output)
        page = login_page(url)
        assert page is not None and page.status_code == 200, page and page.text[:500]
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        # Static files: collected at start, served by WhiteNoise under cache-busting names.
        stylesheet = re.search(r'href="(/static/css/app\.[0-9a-f]{12}\.css)"', page.text)
        assert stylesheet, page.text[:2000]
        css = requests.get(f"{url}{stylesheet[1]}", headers=BEHIND_THE_PROXY, timeout=10)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        assert "immutable" in css.headers["Cache-Control"]

        # Segment's protocol: the ingest key as the Basic-auth user name.
        accepted = requests.post(f"{url}/v1/track", auth=(ingest_key, ""), headers=BEHIND_THE_PROXY, timeout=30,
                                 json={"userId": "u1", "event": "Production Recipe Works"})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["success"] is True and accepted.json()["accepted"] == 1
        stored = Event.objects.filter(workspace=workspace).get()
        assert (stored.type, stored.name, stored.user_id) == ("track", "Production Recipe Works", "u1")

        # The worker takes what beat schedules (the relay's sweep, every 5 s) over the shared broker.
        wait_for(lambda: stack.running() and re.search(r"worker\.1 .*sweep_relay\[[^\]]+\] succeeded", stack.output())
                 is not None, START_TIMEOUT, "the worker running beat's sweep", logs=stack.output)
    output = stack.output()
    assert "refused to start" not in output
    assert ingest_key not in output
    assert 'method=POST path="/v1/track" status=200' in output


def test_every_process_of_the_procfile_pins_the_production_settings() -> None:
    """manage.py and Celery default to the local settings, which send to the local emulator."""
    lines = [line for line in (REPO_ROOT / "Procfile").read_text().splitlines() if line and not line.startswith("#")]
    assert {line.split(":", 1)[0] for line in lines} == {"release", "web", "worker", "beat"}
    for line in lines:
        assert line.split(":", 1)[1].strip().startswith("export DJANGO_SETTINGS_MODULE=config.settings.production && ")
