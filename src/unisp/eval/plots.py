"""Line charts as self-contained SVG markup (no plotting library, no scripts, no external files).

:func:`line_chart` draws one or more ``(x, y)`` series on shared axes with "nice" ticks, a legend
and an optional logarithmic y axis; the report embeds the markup inline. Non-finite points (a
NaN loss that training skipped) are left out of the line and counted in the legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

#: Series colours: the "Tableau 10" palette (distinct, colour-blind-safe enough for ≤ 10 lines).
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)
#: Chart size in CSS pixels and margins around the plotting area (room for tick labels and legend).
WIDTH, HEIGHT = 600, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 176, 30, 40
#: Series longer than this are thinned to every k-th point (a browser draws 1,500 points fine).
MAX_POINTS = 1500
#: Series with at most this many points also get a dot per point (validation has few).
MARKER_POINTS = 40
#: A positive series spanning more than this ratio (max/min) gets a log y axis in ``log_y="auto"``.
LOG_RATIO = 100.0
#: About this many ticks per axis.
TICKS = 5

Point = tuple[float, float]


def nice_ticks(lo: float, hi: float, count: int = TICKS) -> list[float]:
    """Round tick values covering ``[lo, hi]``: steps of 1, 2 or 5 × 10^k (Heckbert's "nice numbers").

    Args:
        lo: smallest value to cover.
        hi: largest value to cover (``hi == lo`` is widened by one unit around it).
        count: about how many ticks.

    Returns:
        Increasing tick values from ``≤ lo`` to ``≥ hi``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"ticks need finite bounds, got {lo}, {hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.5 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    fraction = raw / power  # in [1, 10): round it to the nearest of 1, 2, 5, 10 (Heckbert's thresholds)
    step = power * (1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    n = int(round((last - first) / step))
    return [round(first + i * step, 12) for i in range(n + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten covering ``[lo, hi]`` (both positive): ``10^floor(log lo) … 10^ceil(log hi)``."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if a == b:
        b += 1
    return [10.0**k for k in range(a, b + 1)]


def format_tick(value: float) -> str:
    """A short tick label: ``0``, ``0.05``, ``1200``, ``1e-05``, ``2.5e+04``."""
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.6g}"
    return f"{value:.2g}"


def finite_points(points: Sequence[Point]) -> list[Point]:
    """The points whose x and y are both finite numbers."""
    return [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def thin(points: list[Point], limit: int = MAX_POINTS) -> list[Point]:
    """Every k-th point so that at most about ``limit`` remain (the last point is always kept)."""
    if len(points) <= limit:
        return points
    stride = math.ceil(len(points) / limit)
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def line_chart(
    series: dict[str, Sequence[Point]],
    *,
    title: str,
    x_label: str = "step",
    log_y: bool | str = "auto",
) -> str:
    """One SVG line chart of several series on shared axes.

    Args:
        series: label → ``(x, y)`` points (any order; sorted by x). Non-finite points are dropped
            and counted in the legend ("3 non-finite").
        title: drawn above the plot and as the SVG's accessible ``<title>``.
        x_label: the x axis' name.
        log_y: ``True`` for a log₁₀ y axis, ``False`` for linear, ``"auto"`` for log when every
            value is positive and they span more than :data:`LOG_RATIO`.

    Returns:
        ``<svg class="plot" ...>`` markup, with ``data-series`` (series drawn) and ``data-points``
        (points drawn) attributes; a chart with no finite point says so in place of the lines.
    """
    clean = {name: sorted(finite_points(pts)) for name, pts in series.items()}
    dropped = {name: len(series[name]) - len(pts) for name, pts in clean.items()}
    values = [y for pts in clean.values() for _, y in pts]
    xs = [x for pts in clean.values() for x, _ in pts]
    positive = bool(values) and min(values) > 0
    if log_y == "auto":
        log_y = positive and max(values) / min(values) > LOG_RATIO
    elif log_y and not positive:
        log_y = False  # a log axis cannot show zero or negative values
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" data-series="{sum(1 for p in clean.values() if p)}" '
        f'data-points="{len(values)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="18" class="plot-title">{escape(title)}</text>',
    ]
    if not values:
        parts.append(
            f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{MARGIN_TOP + plot_h / 2}" text-anchor="middle" '
            'class="plot-empty">no finite values logged</text></svg>'
        )
        return "".join(parts)

    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = log_ticks(min(values), max(values)) if log_y else nice_ticks(min(values), max(values))

    def fy(y: float) -> float:
        lo, hi = y_ticks[0], y_ticks[-1]
        t = (math.log10(y) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) if log_y else (y - lo) / (hi - lo)
        return MARGIN_TOP + plot_h * (1 - t)

    def fx(x: float) -> float:
        return MARGIN_LEFT + plot_w * (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])

    bottom = MARGIN_TOP + plot_h
    for t in x_ticks:
        parts.append(f'<line class="grid" x1="{fx(t):.1f}" x2="{fx(t):.1f}" y1="{MARGIN_TOP}" y2="{bottom}"/>')
        parts.append(f'<text x="{fx(t):.1f}" y="{bottom + 16}" text-anchor="middle">{format_tick(t)}</text>')
    for t in y_ticks:
        parts.append(f'<line class="grid" x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{fy(t):.1f}" y2="{fy(t):.1f}"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{fy(t) + 4:.1f}" text-anchor="end">{format_tick(t)}</text>')
    parts.append(f'<rect class="frame" x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}"/>')
    parts.append(f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}'
                 f'{" (log y)" if log_y else ""}</text>')

    for i, (name, pts) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        shown = thin(pts)
        coords = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in shown)
        label = escape(name)
        if len(shown) > 1:
            parts.append(f'<polyline class="series" fill="none" stroke="{colour}" points="{coords}"><title>{label}</title></polyline>')
        if 0 < len(shown) <= MARKER_POINTS:
            parts += [f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in shown]
        ly = MARGIN_TOP + 8 + 16 * i
        lx = MARGIN_LEFT + plot_w + 12
        note = f" ({dropped[name]} non-finite)" if dropped[name] else ""
        last = f" = {pts[-1][1]:.4g}" if pts else " (none)"
        parts.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2.5"/>')
        parts.append(f'<text x="{lx + 18}" y="{ly + 4}" class="legend">{label}{last}{note}</text>')
    parts.append("</svg>")
    return "".join(parts)
