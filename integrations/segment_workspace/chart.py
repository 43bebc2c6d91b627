"""The "Segment vs Tributary" daily API-call chart: geometry only; the template draws it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from integrations.segment_workspace.selectors import UsageDay

WIDTH, HEIGHT, LEFT, TOP, BOTTOM, RIGHT_PAD = 640, 170, 40, 8, 140, 4


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
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    bottom: int = BOTTOM

    @property
    def right(self) -> int:
        return self.width - RIGHT_PAD

    @property
    def disagreeing_days(self) -> int:
        return sum(1 for pair in self.pairs if not pair.agree)


def nice_ceiling(value: int) -> int:
    if value <= 4:
        return 4
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 4, 6, 8, 10) if step * power >= value)


def usage_chart(days: list[UsageDay]) -> UsageChart:
    top_value = nice_ceiling(max([d.tributary for d in days] + [d.segment or 0 for d in days] + [0]))
    plot_width, plot_height = WIDTH - RIGHT_PAD - LEFT, BOTTOM - TOP
    slot = plot_width / max(1, len(days))

    def bar(value: int | None, x: float) -> tuple[float, float, float, float] | None:
        if not value:
            return None
        height = max(1.5, plot_height * value / top_value)  # a small day stays visible
        return (round(x, 2), round(BOTTOM - height, 2), round(slot * 0.36, 2), round(height, 2))

    pairs = []
    for index, day in enumerate(days):
        x = LEFT + index * slot
        pairs.append(BarPair(day.day, day.segment, day.tributary, round(x, 2), round(slot, 2),
                             bar(day.segment, x + slot * 0.12), bar(day.tributary, x + slot * 0.52)))
    ticks = [(round(BOTTOM - plot_height * v / top_value, 2), v) for v in (0, top_value // 2, top_value)]
    step = max(1, len(days) // 6)
    labels = [(round(LEFT + i * slot + slot / 2, 2), days[i].day) for i in range(0, len(days), step)]
    return UsageChart(pairs, ticks, labels, sum(d.segment or 0 for d in days), sum(d.tributary for d in days))
