"""Small charts drawn on the server: pure functions turn per-day numbers into the shapes
of an SVG (bars, a line, labels) that `_charts.html` renders. No chart library, no
script: the SVG is inert markup, with a title and a description for screen readers
and the numbers themselves in a table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

WIDTH = 600
HEIGHT = 150
# Room for the labels at the largest font the stylesheet gives them (27 units, on a chart
# drawn 260-330 px wide, as on a phone): a y-axis number of four characters
# (`axis_number`) and the day labels.
LEFT = 72
RIGHT = WIDTH - 4
TOP = 16  # half a label's height: the top number is centred on the top line
BOTTOM = HEIGHT - 36
BAR_FILL = 0.8  # a bar's share of its day's slot


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # the bars' or the line's class: "bar", "bar failed", "line"
    values: list[int]
    one: str = ""  # the name for exactly one, when it differs: "update first seen"

    def amount(self, value: int) -> str:
        """'1 update first seen', '3 updates first seen', '2 installed'."""
        return f"{value} {self.one if value == 1 and self.one else self.name.lower()}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css_class: str
    label: str  # its tooltip, e.g. "Nov 28: 12 installed"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor: start, middle, end
    centred: bool = False  # vertically centred on `y` (the y-axis numbers), not sitting on it


@dataclass(frozen=True)
class Chart:
    id: str  # unique in the page: the SVG's title and description ids derive from it
    title: str
    description: str
    bars: list[Bar]
    line: str  # polyline points "x,y x,y ..."; "" for a bar chart
    points: list[Point]
    labels: list[Label]
    axis: tuple[float, float, float, float]  # x1, y1, x2, y2 of the baseline
    legend: list[Series]
    # The numbers behind the chart, for a table: one row per day that has any.
    columns: list[str]
    rows: list[tuple[str, list[int]]]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def is_empty(self) -> bool:
        return not self.rows


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `value` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def axis_number(value: int) -> str:
    """A y-axis end in at most four characters: 5000, 10k, 200k, 5M (`nice_ceiling`
    gives 1, 2 or 5 times a power of ten)."""
    for limit, divisor, suffix in ((10**4, 1, ""), (10**6, 10**3, "k"), (10**9, 10**6, "M")):
        if value < limit:
            return f"{value // divisor}{suffix}"
    return f"{value // 10**9}G"


def day_label(day: str) -> str:
    """'2026-11-28' -> 'Nov 28'; anything else as it is."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return day
    return f"{parsed:%b} {parsed.day}"


def bar_chart(chart_id: str, title: str, days: list[str], series: list[Series]) -> Chart:
    """One stacked bar per day, a segment per series with a value above zero."""
    _check_lengths(days, series)
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    y_max = nice_ceiling(max(totals, default=0))
    slot = (RIGHT - LEFT) / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        base = float(BOTTOM)
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            height = value / y_max * (BOTTOM - TOP)
            base -= height
            bars.append(
                Bar(
                    x=_round(LEFT + i * slot + slot * (1 - BAR_FILL) / 2),
                    y=_round(base),
                    width=_round(slot * BAR_FILL),
                    height=_round(height),
                    css_class=s.css_class,
                    label=f"{day_label(day)}: {s.amount(value)}",
                )
            )
    return _chart(chart_id, title, days, series, y_max, bars=bars)


def line_chart(chart_id: str, title: str, days: list[str], series: Series) -> Chart:
    """A line through one value per day, with a point (and tooltip) on each day."""
    _check_lengths(days, [series])
    y_max = nice_ceiling(max(series.values, default=0))
    slot = (RIGHT - LEFT) / max(len(days), 1)
    points = [
        Point(
            x=_round(LEFT + i * slot + slot / 2),
            y=_round(BOTTOM - value / y_max * (BOTTOM - TOP)),
            label=f"{day_label(day)}: {series.amount(value)}",
        )
        for i, (day, value) in enumerate(zip(days, series.values, strict=True))
    ]
    line = " ".join(f"{p.x:g},{p.y:g}" for p in points)
    return _chart(chart_id, title, days, [series], y_max, points=points, line=line)


def _chart(
    chart_id: str,
    title: str,
    days: list[str],
    series: list[Series],
    y_max: int,
    *,
    bars: list[Bar] | None = None,
    points: list[Point] | None = None,
    line: str = "",
) -> Chart:
    rows = [
        (day, [s.values[i] for s in series])
        for i, day in enumerate(days)
        if any(s.values[i] for s in series)
    ]
    labels = [
        Label(LEFT - 6, TOP, axis_number(y_max), "end", centred=True),
        Label(LEFT - 6, BOTTOM, "0", "end", centred=True),
    ]
    if days:
        labels.append(Label(LEFT, HEIGHT - 6, day_label(days[0]), "start"))
        labels.append(Label(RIGHT, HEIGHT - 6, day_label(days[-1]), "end"))
    if not rows:
        labels.append(Label((LEFT + RIGHT) / 2, (TOP + BOTTOM) / 2, "Nothing in these days"))
    return Chart(
        id=chart_id,
        title=title,
        description=_describe(days, series, rows),
        bars=bars or [],
        line=line,
        points=points or [],
        labels=labels,
        axis=(LEFT, BOTTOM, RIGHT, BOTTOM),
        legend=series,
        columns=["Day", *(s.name for s in series)],
        rows=rows,
    )


def _describe(days: list[str], series: list[Series], rows: list[tuple[str, list[int]]]) -> str:
    """What a sighted reader takes from the chart, in one or two sentences."""
    if not days:
        return "No days to show."
    span = f"{day_label(days[0])} to {day_label(days[-1])}"
    if not rows:
        return f"Nothing from {span}."
    totals = ", ".join(s.amount(sum(s.values)) for s in series)
    busiest_day, busiest = max(rows, key=lambda row: sum(row[1]))
    return f"From {span}: {totals}. Busiest day {day_label(busiest_day)} with {sum(busiest)}."


def _check_lengths(days: list[str], series: list[Series]) -> None:
    for s in series:
        if len(s.values) != len(days):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(days)} days")


def _round(value: float) -> float:
    return round(value, 1)
