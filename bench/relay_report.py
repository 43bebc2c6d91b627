"""The table bench/relay.py ends with: each figure, its target, the official library's
figure from the same run, and the ratio between them."""

from __future__ import annotations

from dataclasses import dataclass, field

TARGET_END_TO_END = 30_000
TARGET_SOURCE_EVENTS = 20_000
TARGET_P99_SECONDS = 1.0


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


def print_table(results: Results) -> None:
    get = results.get
    lib_rate, lib_p50, lib_p99, lib_lost = get("lib_rate"), get("lib_p50"), get("lib_p99"), get("lib_lost")
    ingest, e2e1, e2e3 = get("ingest"), get("e2e_one"), get("e2e_three")
    p99, lost, via_lost, drain = get("p99"), get("lost"), get("lib_via_lost"), get("drain")
    rows = [
        ("ingest events/s (HTTP API, 100/batch)", _count(ingest), f"≥ {TARGET_END_TO_END:,} (implied)",
         _count(lib_rate), _ratio(ingest, lib_rate), None if ingest is None else ingest >= TARGET_END_TO_END),
        ("  same, spread over 4 workspaces", _count(get("ingest_spread")), "(diagnostic)", "", "", None),
        ("end-to-end events/s, 1 connection", _count(e2e1), f"≥ {TARGET_END_TO_END:,}", _count(lib_rate),
         _ratio(e2e1, lib_rate), None if e2e1 is None else e2e1 >= TARGET_END_TO_END),
        ("  same, 500-event requests", _count(get("e2e_one_large")), "(diagnostic)", _count(lib_rate),
         _ratio(get("e2e_one_large"), lib_rate), None),
        ("source events/s, 3 connections", _count(e2e3), f"≥ {TARGET_SOURCE_EVENTS:,}", _count(lib_rate),
         _ratio(e2e3, lib_rate), None if e2e3 is None else e2e3 >= TARGET_SOURCE_EVENTS),
        ("latency p50 at 2,000 events/s", _ms(get("p50")), "", _ms(lib_p50), _ratio(get("p50"), lib_p50), None),
        ("latency p99 at 2,000 events/s", _ms(p99), f"≤ {TARGET_P99_SECONDS * 1000:,.0f} ms", _ms(lib_p99),
         _ratio(p99, lib_p99), None if p99 is None else p99 <= TARGET_P99_SECONDS),
        ("events lost of the burst", _count(lost), "0", _count(lib_lost), "", None if lost is None else lost == 0),
        ("delivery alone: backlog drain events/s", _count(drain), f"≥ {TARGET_END_TO_END:,} (implied)",
         _count(lib_rate), _ratio(drain, lib_rate), None if drain is None else drain >= TARGET_END_TO_END),
        ("official lib via Tributary: events/s", _count(get("lib_via_rate")), "", _count(lib_rate),
         _ratio(get("lib_via_rate"), lib_rate), None),
        ("official lib via Tributary: lost of burst", _count(via_lost), "0", _count(lib_lost), "",
         None if via_lost is None else via_lost == 0),
    ]
    header = f"{'figure':<42}{'Tributary':>12}  {'target':<20}{'official lib':>13}  {'ratio':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, ours, target, theirs, ratio, ok in rows:
        print(f"{name:<42}{ours:>12}  {target:<20}{theirs:>13}  {ratio:>7}{_verdict(ok)}")
    print("official lib = segment-analytics-python 2.4.0, default settings, sending straight to the emulator "
          "(one client, one consumer thread); ratio = Tributary ÷ official lib.")
    for note in results.notes:
        print(f"note: {note}")
