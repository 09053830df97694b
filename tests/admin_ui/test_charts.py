"""Charts drawn as SVG: labels escaped, bars scaled to the largest value, empty data drawn as such."""

from __future__ import annotations

import re

from admin_ui import charts


def test_labels_are_escaped():
    svg = charts.bars("t", [("<script>x</script>", 1.0)]) + charts.columns("t", ["a&b"], [("s<1>", [1.0])])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg and "s&lt;1&gt;" in svg


def test_the_largest_bar_is_the_longest():
    svg = charts.bars("t", [("a", 4), ("b", 2)])
    widths = [float(w) for w in re.findall(r'<rect x="206" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths[0] == 2 * widths[1]


def test_no_data_says_so():
    assert "no data yet" in charts.line("t", []) and "nothing yet" in charts.bars("t", [])
