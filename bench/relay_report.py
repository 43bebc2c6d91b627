"""The table bench/relay.py ends with: each figure, its target, the official library's
figure from the same run, and the ratio between them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Issue #15's targets, as ratios within one run (absolute figures here vary 2x between days).
TARGET_E2E_RATIO = 3.0  # end to end, 1 connection, 100-event requests ÷ the official library direct
TARGET_VIA_RATIO = 0.7  # the official library through Tributary ÷ the same library direct
TARGET_ANSWER_P50 = 0.006  # seconds: a 100-event batch answered, stored and committed, light load
TARGET_TRACK_SHARE = 0.5  # single-event /v1/track requests/s ÷ the trivial view's, same server
TARGET_P99_SECONDS = 0.25  # ingest to delivered at 2,000 events/s


@dataclass
class Results:
    """Every figure of the run; None where a phase was skipped."""

    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def set(self, name: str, value: float) -> None:
        self.figures[name] = value

    def get(self, name: str) -> float | None:
        return self.figures.get(name)


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f} ms"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "—"
    return f"{ours / theirs:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("  ok" if ok else "  MISSED")


def _at_least(ours: float | None, theirs: float | None, share: float) -> bool | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs >= share


def print_table(results: Results) -> None:
    get = results.get
    lib_rate, lib_p50, lib_p99, lib_lost = get("lib_rate"), get("lib_p50"), get("lib_p99"), get("lib_lost")
    e2e1, via, answer = get("e2e_one"), get("lib_via_rate"), get("answer_p50")
    track, trivial = get("track_rps"), get("trivial_rps")
    p99, lost, via_lost, drain = get("p99"), get("lost"), get("lib_via_lost"), get("drain")
    lib, triv = "official lib", "trivial view"
    rows = [
        # Issue #15's targets.
        ("end-to-end events/s, 1 conn., 100/request", _count(e2e1), f"≥ {TARGET_E2E_RATIO:g}x {lib}", _count(lib_rate),
         _ratio(e2e1, lib_rate), _at_least(e2e1, lib_rate, TARGET_E2E_RATIO)),
        ("official lib via Tributary: events/s", _count(via), f"≥ {TARGET_VIA_RATIO:g}x {lib}", _count(lib_rate),
         _ratio(via, lib_rate), _at_least(via, lib_rate, TARGET_VIA_RATIO)),
        ("answer p50, 100-event batch, light load", _ms1(answer), f"≤ {TARGET_ANSWER_P50 * 1000:g} ms", "", "",
         None if answer is None else answer <= TARGET_ANSWER_P50),
        ("single-event /v1/track requests/s", _count(track), f"≥ {TARGET_TRACK_SHARE:.0%} of {triv}", _count(trivial),
         _ratio(track, trivial), _at_least(track, trivial, TARGET_TRACK_SHARE)),
        ("latency p99 at 2,000 events/s", _ms(p99), f"≤ {TARGET_P99_SECONDS * 1000:,.0f} ms", _ms(lib_p99),
         _ratio(p99, lib_p99), None if p99 is None else p99 <= TARGET_P99_SECONDS),
        ("events lost of the burst", _count(lost), "0", _count(lib_lost), "", None if lost is None else lost == 0),
        # Diagnostics: no target of their own.
        ("ingest events/s (HTTP API, 100/request)", _count(get("ingest")), "", _count(lib_rate),
         _ratio(get("ingest"), lib_rate), None),
        ("  same, spread over 4 workspaces", _count(get("ingest_spread")), "", "", "", None),
        ("a one-row commit alone, p50 (the disk)", _ms1(get("commit_p50")), "", "", "", None),
        ("end-to-end events/s, 500/request", _count(get("e2e_one_large")), "", _count(lib_rate),
         _ratio(get("e2e_one_large"), lib_rate), None),
        ("source events/s, 3 connections", _count(get("e2e_three")), "", _count(lib_rate),
         _ratio(get("e2e_three"), lib_rate), None),
        ("latency p50 at 2,000 events/s", _ms(get("p50")), "", _ms(lib_p50), _ratio(get("p50"), lib_p50), None),
        ("delivery alone: backlog drain events/s", _count(drain), "", _count(lib_rate), _ratio(drain, lib_rate), None),
        ("official lib via Tributary: lost of burst", _count(via_lost), "", _count(lib_lost), "", None),
        ("web CPU per /v1/track request", _us(get("track_cpu")), "", _us(get("trivial_cpu")),
         _ratio(get("track_cpu"), get("trivial_cpu")), None),
        # The floors: what storing alone allows, whatever ingest does around it.
        ("one event stored alone, requests/s (floor)", _count(get("store_rps")), f"vs {TARGET_TRACK_SHARE:.0%} target",
         _count(trivial), _ratio(get("store_rps"), trivial), None),
        ("web CPU per event stored alone", _us(get("store_cpu")), "", _us(get("trivial_cpu")),
         _ratio(get("store_cpu"), get("trivial_cpu")), None),
        ("end to end via a store alone (floor)", _count(get("e2e_store")), f"vs {TARGET_E2E_RATIO:g}x target",
         _count(lib_rate), _ratio(get("e2e_store"), lib_rate), None),
        ("official lib via a store alone (floor)", _count(get("lib_store_rate")), f"vs {TARGET_VIA_RATIO:g}x target",
         _count(lib_rate), _ratio(get("lib_store_rate"), lib_rate), None),
    ]
    header = f"{'figure':<42}{'Tributary':>10}  {'target':<26}{'compared':>10}  {'ratio':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for index, (name, ours, target, theirs, ratio, ok) in enumerate(rows):
        if index == 6:
            print("diagnostics:")
        print(f"{name:<42}{ours:>10}  {target:<26}{theirs:>10}  {ratio:>7}{_verdict(ok)}")
    print("compared = the official library (segment-analytics-python 2.4.0, default settings, one client, one "
          "consumer thread) sending straight to the emulator, or for /v1/track the trivial view answering "
          '{"success": true} through the same server; ratio = Tributary ÷ compared.')
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{load:.1f}" for load in os.getloadavg())
          + " on " + f"{os.cpu_count()} cores: figures from a busy machine are not comparable across runs")
    for note in results.notes:
        print(f"note: {note}")


def _us(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e6:,.0f} µs"


def _ms1(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.1f} ms"
