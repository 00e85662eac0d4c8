"""The dashboard's charts: per-day numbers become bars, a line and labels that fit the
SVG, and the markup the template makes of them is inert, titled and described."""

from __future__ import annotations

import re

import pytest

from web.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    Series,
    axis_number,
    bar_chart,
    line_chart,
    nice_ceiling,
)
from web.templating import environment

DAYS = ["2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29"]


def _render(chart: object) -> str:
    template = environment.from_string('{% from "_charts.html" import chart %}{{ chart(c) }}')
    return template.render(c=chart)


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (120, 200), (5000, 5000)],
)
def test_the_y_axis_ends_at_a_round_number_at_or_above_the_highest_value(
    value: int, ceiling: int
) -> None:
    assert nice_ceiling(value) == ceiling


def test_a_bar_chart_has_one_bar_per_day_and_series_with_a_value() -> None:
    chart = bar_chart(
        "c",
        "Installs per day",
        DAYS,
        [Series("Installed", "bar", [3, 0, 5, 0]), Series("Failed", "bar failed", [1, 0, 0, 2])],
    )
    assert [(b.css_class, b.label) for b in chart.bars] == [
        ("bar", "Nov 26: 3 installed"),
        ("bar failed", "Nov 26: 1 failed"),
        ("bar", "Nov 28: 5 installed"),
        ("bar failed", "Nov 29: 2 failed"),
    ]
    assert chart.rows == [("2026-11-26", [3, 1]), ("2026-11-28", [5, 0]), ("2026-11-29", [0, 2])]
    assert chart.columns == ["Day", "Installed", "Failed"]


def test_stacked_bars_sit_on_each_other_and_the_tallest_day_fits_the_plot() -> None:
    chart = bar_chart(
        "c", "t", DAYS, [Series("A", "bar", [0, 0, 6, 1]), Series("B", "bar b", [0, 0, 4, 0])]
    )
    a, b, _ = chart.bars
    assert a.y + a.height == pytest.approx(BOTTOM)
    assert b.y + b.height == pytest.approx(a.y, abs=0.1)
    # 10 is the axis maximum: the stack of 10 fills the plot from bottom to top.
    assert b.y == pytest.approx(TOP, abs=0.1)
    for bar in chart.bars:
        assert bar.x >= LEFT and bar.x + bar.width <= RIGHT
        assert bar.height > 0


def test_a_line_chart_has_a_point_on_every_day_and_zero_is_on_the_baseline() -> None:
    chart = line_chart("c", "New updates", DAYS, Series("Updates", "line", [0, 2, 5, 0]))
    assert len(chart.points) == 4
    assert chart.points[0].y == BOTTOM and chart.points[2].y == TOP
    assert chart.line.count(",") == 4
    assert [p.x for p in chart.points] == sorted(p.x for p in chart.points)


def test_a_chart_with_nothing_says_so() -> None:
    chart = bar_chart("c", "Installs", DAYS, [Series("Installed", "bar", [0, 0, 0, 0])])
    assert chart.is_empty and chart.bars == []
    assert chart.description == "Nothing from Nov 26 to Nov 29."
    assert "Nothing in these days" in [label.text for label in chart.labels]


def test_the_description_gives_totals_and_the_busiest_day() -> None:
    chart = bar_chart(
        "c",
        "t",
        DAYS,
        [Series("Installed", "bar", [1, 2, 0, 0]), Series("Failed", "f", [0, 2, 0, 1])],
    )
    assert chart.description == (
        "From Nov 26 to Nov 29: 3 installed, 3 failed. Busiest day Nov 27 with 4."
    )


def test_one_of_something_is_named_in_the_singular() -> None:
    series = Series("Updates first seen", "line", [0, 1, 0, 0], one="update first seen")
    chart = line_chart("c", "New updates", DAYS, series)
    assert chart.description == (
        "From Nov 26 to Nov 29: 1 update first seen. Busiest day Nov 27 with 1."
    )
    assert chart.points[1].label == "Nov 27: 1 update first seen"
    assert chart.points[0].label == "Nov 26: 0 updates first seen"


def test_the_y_axis_number_stays_short_enough_for_a_phone() -> None:
    chart = bar_chart("c", "t", DAYS, [Series("A", "bar", [0, 12_000, 0, 0])])
    assert [label.text for label in chart.labels][:2] == ["20k", "0"]
    assert [axis_number(n) for n in (5, 5000, 10_000, 500_000, 2_000_000)] == [
        "5",
        "5000",
        "10k",
        "500k",
        "2M",
    ]


def test_a_series_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="3 values for 4 days"):
        bar_chart("c", "t", DAYS, [Series("A", "bar", [1, 2, 3])])


def test_the_svg_is_an_image_with_a_title_and_description_and_no_script() -> None:
    chart = bar_chart(
        "installs",
        'Installs <script>alert(1)</script> "per" day',
        DAYS,
        [Series("Installed", "bar", [1, 0, 2, 0]), Series("Failed", "bar failed", [0, 1, 0, 0])],
    )
    html = _render(chart)
    svg = re.search(r"<svg class=\"chart\"[^>]*>", html)
    assert svg is not None
    assert 'role="img"' in svg.group(0)
    assert 'aria-labelledby="installs-title installs-desc"' in svg.group(0)
    assert f'viewBox="0 0 {chart.width} {HEIGHT}"' in svg.group(0)
    assert '<title id="installs-title">Installs &lt;script&gt;' in html
    assert '<desc id="installs-desc">From Nov 26' in html
    assert "<script" not in html
    assert not re.search(r"\son\w+=", html)
    assert len(re.findall(r'<rect class="bar(?: failed)?" x=', html)) == 3
    assert "<title>Nov 27: 1 failed</title>" in html
    # The numbers are there as a table too, and there is a legend for two series.
    assert '<th scope="row">2026-11-28</th><td class="num">2</td><td class="num">0</td>' in html
    assert 'class="legend"' in html


def test_a_line_chart_renders_a_polyline_and_its_points() -> None:
    html = _render(line_chart("new", "New updates", DAYS, Series("Updates", "line", [1, 2, 3, 4])))
    assert len(re.findall(r"<polyline class=\"line\" points=\"[0-9., ]+\"/>", html)) == 1
    assert len(re.findall(r"<circle class=\"point\"", html)) == 4
    assert 'class="legend"' not in html
