"""Charts as SVG drawn on the server (decision 0018): columns per day, a line over time, and
horizontal bars. Numbers in, markup out, no I/O; every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

COLOURS = ("#2f5bd3", "#f79009", "#12b76a", "#9e77ed")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 1000, 240, 56, 24, 12
# Horizontal bars: where the labels end and the bars begin.
LABELS_END, BARS_START = 200, 206


def _number(value: float) -> str:
    """A short axis label: 1.2k, 3.4M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _frame(title: str, top_value: float, body: list[str], height: int = HEIGHT) -> Markup:
    plot = height - BOTTOM - TOP
    grid = []
    for step in range(5):
        y = TOP + plot - plot * step / 4
        grid.append(f'<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaecf0"/>'
                    f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(top_value * step / 4)}</text>')
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
                  + "".join(grid) + "".join(body) + "</svg>")


def columns(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> Markup:
    """Grouped columns: one group per label (e.g. a day), one column per series, with a legend."""
    top = max((value for _, values in series for value in values), default=0) or 1
    plot_h, slot = HEIGHT - BOTTOM - TOP, (WIDTH - LEFT) / max(len(labels), 1)
    width = max(slot * 0.8 / max(len(series), 1), 1)
    body = []
    for index, label in enumerate(labels):
        for number, (name, values) in enumerate(series):
            height = plot_h * values[index] / top
            x = LEFT + slot * index + slot * 0.1 + width * number
            body.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{width:.1f}" '
                        f'height="{height:.1f}" fill="{COLOURS[number % len(COLOURS)]}">'
                        f'<title>{escape(label)} {escape(name)}: {_number(values[index])}</title></rect>')
        if len(labels) <= 12 or index % max(len(labels) // 8, 1) == 0:
            body.append(f'<text x="{LEFT + slot * (index + 0.5):.1f}" y="{HEIGHT - 6}" '
                        f'text-anchor="middle">{escape(label)}</text>')
    body += _legend([name for name, _ in series])
    return _frame(title, top, body)


def line(title: str, points: Sequence[tuple[float, float]], x_label: str = "") -> Markup:
    """A line through (x, y) points, x increasing left to right."""
    if not points:
        return _frame(title, 1, [f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>'])
    xs, ys = [x for x, _ in points], [y for _, y in points]
    top = max(ys) or 1
    span = (max(xs) - min(xs)) or 1
    plot_h = HEIGHT - BOTTOM - TOP
    path = " ".join(f"{LEFT + (WIDTH - LEFT) * (x - min(xs)) / span:.1f},{TOP + plot_h - plot_h * y / top:.1f}"
                    for x, y in points)
    body = [f'<polyline points="{path}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>',
            f'<text x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end">{escape(x_label)}</text>']
    return _frame(title, top, body)


def bars(title: str, items: Sequence[tuple[str, float]], unit: str = "") -> Markup:
    """Horizontal bars, largest first as given, each with its label and value."""
    row_h = 22
    height = max(len(items), 1) * row_h + 10
    top = max((value for _, value in items), default=0) or 1
    body = []
    for index, (label, value) in enumerate(items):
        y = 5 + index * row_h
        length = (WIDTH - BARS_START - 100) * value / top
        body.append(f'<text x="{LABELS_END}" y="{y + 15}" text-anchor="end">{escape(label[:32])}</text>'
                    f'<rect x="{BARS_START}" y="{y + 3}" width="{max(length, 1):.1f}" height="{row_h - 8}" '
                    f'fill="{COLOURS[0]}"/><text x="{BARS_START + 4 + length:.1f}" y="{y + 15}">'
                    f'{_number(value)}{escape(unit)}</text>')
    if not items:
        body.append(f'<text x="{WIDTH / 2}" y="20" text-anchor="middle">nothing yet</text>')
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>')


def _legend(names: Sequence[str]) -> list[str]:
    return [f'<rect x="{LEFT + 10 + 110 * index}" y="{TOP}" width="10" height="10" '
            f'fill="{COLOURS[index % len(COLOURS)]}"/><text x="{LEFT + 24 + 110 * index}" y="{TOP + 9}">'
            f'{escape(name)}</text>' for index, name in enumerate(names)]
