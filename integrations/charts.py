"""Chart geometry in an SVG viewBox, the templates only drawing what is computed here: the
30-day bar charts of a connection's Deliveries tab, and the In Segment tab's daily API calls
as Segment and Tributary count them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from integrations.segment_workspace.selectors import UsageDay
from integrations.selectors.usage import DayUsage


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    slot_x: float
    slot_width: float
    day: date
    value: int
    is_today: bool

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class Chart:
    """A bar chart's geometry in its SVG viewBox; the template only draws it."""

    key: str
    title: str
    unit: str
    bars: list[Bar]
    ticks: list[Tick]
    day_labels: list[Bar]
    total: int
    peak: DayUsage | None
    peak_value: int
    width: int = 320
    height: int = 150
    left: int = 34
    top: int = 8
    bottom: int = 128

    @property
    def right(self) -> int:
        return self.width - 4

    @property
    def plot_height(self) -> int:
        return self.bottom - self.top

    @property
    def middle(self) -> tuple[float, float]:
        """The plot's centre, where an empty chart says so."""
        return (self.left + self.right) / 2, self.top + self.plot_height / 2


def bar_chart(usage: list[DayUsage], *, key: str, title: str, unit: str, today: date) -> Chart:
    values = [getattr(day, key) for day in usage]
    top_value = nice_ceiling(max(values, default=0))
    chart = Chart(key, title, unit, [], [], [], sum(values), None, 0)
    plot_width, plot_height = chart.right - chart.left, chart.plot_height
    slot = plot_width / max(1, len(usage))
    bars = []
    for index, (day, value) in enumerate(zip(usage, values, strict=True)):
        height = plot_height * value / top_value
        if value:
            height = max(height, 1.5)  # a day with a few events stays visible next to a busy one
        x = chart.left + index * slot
        bars.append(Bar(round(x + slot * 0.15, 2), round(chart.bottom - height, 2), round(slot * 0.7, 2),
                        round(height, 2), round(x, 2), round(slot, 2), day.day, value, day.day == today))
    # An idle chart keeps only its base line, under the words saying it is idle.
    shown = (0, top_value // 2, top_value) if any(values) else (0,)
    ticks = [Tick(round(chart.bottom - plot_height * v / top_value, 2), v) for v in shown]
    labels = [bars[i] for i in range(0, len(bars), 7)] if bars else []
    peak = max(usage, key=lambda d: getattr(d, key)) if any(values) else None
    return Chart(key, title, unit, bars, ticks, labels, sum(values), peak,
                 getattr(peak, key) if peak else 0)


def nice_ceiling(value: int) -> int:
    """The axis' top: the smallest of 1, 2, 4, 6, 8, 10 times 10^k at or above `value`, and at
    least 4, so it is always even and its middle tick a whole number (0, 2, 4 for an idle source)."""
    if value <= 4:
        return 4
    power: int = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 4, 6, 8, 10) if step * power >= value)


# --- "Segment vs Tributary": a source's daily API calls as Segment and Tributary count them ---

PAIR_RIGHT_PAD = 4


@dataclass(frozen=True)
class PairFrame:
    """The viewBox of a usage chart (its width and height) and its plot's edges inside it."""

    width: int
    height: int
    left: int
    top: int
    bottom: int

    @property
    def right(self) -> int:
        return self.width - PAIR_RIGHT_PAD


# A page's width: wide and low. A phone's: about one unit per CSS pixel, so that its axis labels
# stay readable and its bars tall there (the wide frame would be drawn at half size).
WIDE = PairFrame(width=640, height=170, left=40, top=8, bottom=140)
NARROW = PairFrame(width=340, height=190, left=38, top=8, bottom=168)


@dataclass(frozen=True)
class BarPair:
    day: date
    segment: int | None
    tributary: int
    slot_x: float
    slot_width: float
    segment_bar: tuple[float, float, float, float] | None  # x, y, width, height
    tributary_bar: tuple[float, float, float, float] | None

    @property
    def agree(self) -> bool:
        return self.segment is None or self.segment == self.tributary


@dataclass(frozen=True)
class UsageChart:
    pairs: list[BarPair]
    ticks: list[tuple[float, int]]
    labels: list[tuple[float, date]]
    segment_total: int
    tributary_total: int
    frame: PairFrame = WIDE

    @property
    def disagreeing_days(self) -> int:
        return sum(1 for pair in self.pairs if not pair.agree)


def usage_chart(days: list[UsageDay], frame: PairFrame = WIDE) -> UsageChart:
    top_value = nice_ceiling(max([d.tributary for d in days] + [d.segment or 0 for d in days] + [0]))
    plot_width, plot_height = frame.right - frame.left, frame.bottom - frame.top
    slot = plot_width / max(1, len(days))

    def bar(value: int | None, x: float) -> tuple[float, float, float, float] | None:
        if not value:
            return None
        height = max(1.5, plot_height * value / top_value)  # a small day stays visible
        return (round(x, 2), round(frame.bottom - height, 2), round(slot * 0.36, 2), round(height, 2))

    pairs = []
    for index, day in enumerate(days):
        x = frame.left + index * slot
        pairs.append(BarPair(day.day, day.segment, day.tributary, round(x, 2), round(slot, 2),
                             bar(day.segment, x + slot * 0.12), bar(day.tributary, x + slot * 0.52)))
    ticks = [(round(frame.bottom - plot_height * v / top_value, 2), v) for v in (0, top_value // 2, top_value)]
    step = max(1, len(days) // 6)
    labels = [(round(frame.left + i * slot + slot / 2, 2), days[i].day) for i in range(0, len(days), step)]
    return UsageChart(pairs, ticks, labels, sum(d.segment or 0 for d in days), sum(d.tributary for d in days), frame)
