"""Measuring the pages: wall-clock times through the web server; queries, database time and
the web process's CPU in-process; EXPLAIN ANALYZE and a profile for the pages worth a closer
look.

Times come from a real server (granian, production settings, as the relay bench runs it)
over keep-alive HTTP, signed in through the login form: what a person's browser waits for,
less the network. Queries cannot be seen from outside the server, so a second pass asks for
each page again in this process, through Django's test client under `CaptureQueriesContext`,
on the same database and settings. That pass also gives each page's own cost (the web
process's CPU plus its queries' time), which depends far less than wall time on whatever
else the shared machine is running.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from dashboard_pages import Probe
from relay_stack import REPO_ROOT, Service, StackOptions, _wait_for_web, start_web

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Timing:
    status: int = 0
    samples: list[float] = field(default_factory=list)  # seconds
    bytes: int = 0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Queries:
    count: int
    seconds: float  # the queries' time, as Django measured it (the least of a few requests)
    slowest_sql: str
    slowest_seconds: float
    cpu_seconds: float  # the web process's own CPU for the request (Python: view, template; the least)
    selects: list[str] = field(default_factory=list)  # the request's SELECTs, for their plans


@contextmanager
def web_server(options: StackOptions, env: dict[str, str]) -> Iterator[str]:
    """The web server alone, as relay_stack starts it: no worker or beat, so nothing changes the
    data while it is measured (no emulator runs; delivery would only retry)."""
    web: Service = start_web(options, env)
    try:
        url = f"http://127.0.0.1:{options.web_port}"
        _wait_for_web(web, url)
        yield url
    finally:
        web.stop()


class Browser:
    """A signed-in person's keep-alive session. Production sets Secure cookies and sits behind
    a TLS proxy, so requests say X-Forwarded-Proto: https and carry the cookies themselves
    (a cookie jar would not send Secure cookies over plain HTTP)."""

    def __init__(self, base_url: str, email: str, password: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.cookies: dict[str, str] = {}
        login = self.get("/account/login/")
        token = CSRF_INPUT.search(login.text)
        if login.status_code != 200 or token is None:
            raise RuntimeError(f"the login page answered {login.status_code} without a form")
        answer = self.request("POST", "/account/login/", data={
            "username": email, "password": password, "csrfmiddlewaretoken": token.group(1)})
        if answer.status_code != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"signing in as {email} failed: {answer.status_code}")

    def request(self, method: str, path: str, *, htmx: bool = False, **kwargs: Any) -> requests.Response:
        headers = {"X-Forwarded-Proto": "https", "Referer": f"https://{self.base_url.split('//')[1]}/account/login/",
                   "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if htmx:
            headers["HX-Request"] = "true"
        answer = self.session.request(method, self.base_url + path, headers=headers, allow_redirects=False,
                                      timeout=60, **kwargs)
        self.cookies.update({cookie.name: cookie.value or "" for cookie in answer.cookies})
        return answer

    def get(self, path: str, *, htmx: bool = False) -> requests.Response:
        return self.request("GET", path, htmx=htmx)


def time_pages(browsers: dict[str, Browser], probes: list[Probe], *, repeat: int, warmup: int,
               progress: bool = True) -> dict[str, Timing]:
    """Each page `warmup` times unmeasured, then `repeat` times, round-robin over the pages so
    that a noisy moment on the shared machine spreads over all of them rather than one."""
    timings = {probe.label: Timing() for probe in probes}
    for round_number in range(warmup + repeat):
        for probe in probes:
            timing = timings[probe.label]
            if not probe.url:
                timing.status = 404
                continue
            started = time.perf_counter()
            answer = browsers[probe.email].get(probe.url, htmx=probe.htmx)
            elapsed = time.perf_counter() - started
            if timing.status in (0, probe.expect):  # the first unexpected answer is the one reported
                timing.status = answer.status_code
            timing.bytes = len(answer.content)
            if round_number >= warmup:
                timing.samples.append(elapsed)
        done = round_number + 1 - warmup
        if progress and done > 0 and done % 10 == 0 and done < repeat:
            print(f"  {done} of {repeat} rounds", flush=True)
    return timings


def count_queries(probes: list[Probe], *, repeat: int = 5) -> dict[str, Queries]:
    """Each built page again in this process, `repeat` times after one unmeasured request (so
    per-process caches are warm, as in a long-running server), its queries captured: their
    number, the slowest, and the page's own cost, the request's CPU in this process and its
    queries' time. The least of the repeats: on this virtual machine the same request's CPU
    time varies up to 2.5 times with the neighbours' load, so the least is the page's cost with
    the least interference (wall times, the target's measure, include the rest)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    found: dict[str, Queries] = {}
    for probe in probes:
        client = _client(probe.email)
        if not probe.url or _get(client, probe).status_code != probe.expect:
            continue
        cpu, database, slowest, count = [], [], (0.0, ""), 0
        for _ in range(repeat):
            started = time.process_time()
            with CaptureQueriesContext(connection) as captured:
                _get(client, probe)
            cpu.append(time.process_time() - started)
            # Read now: every request's start empties the connection's query log.
            timed = [(float(q["time"]), q["sql"]) for q in captured.captured_queries]
            database.append(sum(t for t, _ in timed))
            slowest, count = max([slowest, *timed]), len(timed)
        selects = list(dict.fromkeys(sql for _, sql in timed if sql.lstrip().upper().startswith("SELECT")))
        found[probe.label] = Queries(count, min(database), slowest[1], slowest[0], min(cpu), selects)
    return found


@dataclass
class Access:
    """How the pages' queries reach the tables, from their plans."""

    indexes: dict[str, set[str]] = field(default_factory=dict)  # index -> pages using it
    scans: dict[str, set[str]] = field(default_factory=dict)  # large table read whole -> pages


def accesses(queries: dict[str, Queries], large_rows: int = 10_000) -> Access:
    """EXPLAIN (without running) every SELECT the pages made: the indexes they use, and any
    sequential scan of a table over `large_rows` rows (none should read a big table whole)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples > %s", [large_rows])
        large = {row[0] for row in cursor.fetchall()}
        found = Access()
        for label, counted in queries.items():
            for sql in counted.selects:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
                plan = cursor.fetchone()[0]
                for node in _nodes(plan[0]["Plan"] if isinstance(plan, list) else plan):
                    if "Index Name" in node:
                        found.indexes.setdefault(node["Index Name"], set()).add(label)
                    elif node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in large:
                        found.scans.setdefault(node["Relation Name"], set()).add(label)
    return found


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def profile(probe: Probe, lines: int = 10) -> str:
    """Where one request's time goes, for a page whose time is not in its queries (cProfile,
    which slows everything down evenly: read the shares, not the milliseconds): the project's
    own functions by cumulative time, then all functions by their own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(_get, _client(probe.email), probe)
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in stats.values())
    rows = [(entry[3], entry[2], entry[1], _where(file, line, function))
            for (file, line, function), entry in stats.items()]
    ours = sorted((row for row in rows if row[3].startswith(("integrations/", "accounts/", "templates/"))),
                  reverse=True)[:lines]
    own = sorted(rows, key=lambda row: row[1], reverse=True)[:lines]
    rendering = sum(entry[3] for (file, _, function), entry in stats.items()
                    if function == "render" and file.endswith(f"django{os.sep}shortcuts.py"))
    text = [f"    rendering templates: {rendering / total:.1%} of the request",
            "    the project's functions, by cumulative share of the request:"]
    text += [f"      {cumulative / total:6.1%}  {calls:>7} calls  {where}" for cumulative, _, calls, where in ours]
    text += ["    all functions, by their own share:"]
    text += [f"      {tottime / total:6.1%}  {calls:>7} calls  {where}" for _, tottime, calls, where in own]
    return "\n".join(text)


def _where(file: str, line: int, function: str) -> str:
    path = Path(file)
    if path.is_relative_to(REPO_ROOT) and ".venv" not in path.parts:
        return f"{path.relative_to(REPO_ROOT)}:{line} {function}"
    return f"{'/'.join(path.parts[-2:])}:{line} {function}"


_clients: dict[str, Any] = {}


def _client(email: str) -> Any:
    """Django's test client, signed in (`force_login`) as the person, one per person."""
    from django.test import Client

    from accounts.models import User

    if email not in _clients:
        _clients[email] = Client()
        _clients[email].force_login(User.objects.get(email=email))
    return _clients[email]


def _get(client: Any, probe: Probe) -> Any:
    return client.get(probe.url, secure=True, headers={"HX-Request": "true"} if probe.htmx else {})


def explain(sql: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a captured query, as PostgreSQL runs it now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())

