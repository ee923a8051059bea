"""Small server-drawn SVG charts and overlays (no script, no external library, CSP-safe)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 48, 16, 36


def timeline_chart(timeline: Sequence[dict[str, Any]]) -> Markup:
    """Changed area (bars, left axis, px) and scores (lines, right axis, 0–1) per photo over time.

    ``timeline`` items carry ``photo`` (with ``received_at``), ``changed_area``, ``change_score`` and
    ``recurrence_score`` (None where the photo has no analysis). Returns an empty Markup with fewer than one
    analysed photo.
    """
    points = [t for t in timeline if t.get("analysis") is not None]
    if not points:
        return Markup("")
    times = [t["photo"].received_at.timestamp() for t in timeline]
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    max_area = max([t["changed_area"] or 0 for t in points] + [1])

    def x(t) -> float:
        if t1 == t0:
            return LEFT + plot_w / 2
        return LEFT + (t["photo"].received_at.timestamp() - t0) / span * plot_w

    def y_score(value: float) -> float:
        return TOP + (1 - max(0.0, min(1.0, value))) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Change over time</title>',
        f'<desc id="chart-desc">Changed area in pixels (bars) and change and recurrence scores (lines) for '
        f'{len(points)} analysed photos; the same figures are in the table below.</desc>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#555"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#555"/>',
        f'<line x1="{LEFT + plot_w}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#555"/>',
    ]
    for frac in (0, 0.5, 1):
        y = TOP + (1 - frac) * plot_h
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#333">'
                     f'{int(max_area * frac):,}</text>')
        parts.append(f'<text x="{LEFT + plot_w + 6}" y="{y + 4:.1f}" font-size="11" fill="#333">{frac:.1f}</text>')
        if frac:
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
    parts.append(f'<text x="4" y="{TOP + 10}" font-size="11" fill="#333">px</text>')
    parts.append(f'<text x="{WIDTH - 4}" y="{TOP + 10}" font-size="11" text-anchor="end" fill="#333">score</text>')
    bar_w = max(4.0, min(18.0, plot_w / max(1, len(timeline)) * 0.5))
    for t in points:
        area = t["changed_area"] or 0
        h = area / max_area * plot_h
        parts.append(f'<rect x="{x(t) - bar_w / 2:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}" fill="#9cc3e0"><title>{escape(t["photo"].received_at.date())}: '
                     f'{area:,} px changed</title></rect>')
    for key, colour, dash in (("change_score", "#b35c00", "6 3"), ("recurrence_score", "#8a1010", "")):
        series = [(x(t), y_score(t[key])) for t in points if t.get(key) is not None]
        if series:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in series)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in series)
    first, last = timeline[0]["photo"].received_at, timeline[-1]["photo"].received_at
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11" fill="#333">{first:%d %b %Y}</text>')
    if last != first:
        parts.append(f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" font-size="11" text-anchor="end" '
                     f'fill="#333">{last:%d %b %Y}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


SCAR_COLOUR, SITE_COLOUR, DRAFT_COLOUR = "#ffffff", "#00c8ff", "#ff3df2"  # as registration.render_overlays draws


def outline_overlay(*, width: int, height: int, polygon: Optional[Sequence[Sequence[float]]],
                    margin_px: Optional[float], shown_width: float, key: str) -> Markup:
    """An SVG to lay over a baseline photo of ``width`` × ``height`` pixels: the watched site (the outline and
    ``margin_px`` around it, blue) and the scar's outline (white), in photo pixels; plus an empty
    ``polyline.draft`` that the outline editor draws into. ``shown_width`` is the photo's width on the page
    (for line widths); ``key`` makes the ids unique on the page."""
    lw = 2.0 * width / max(shown_width, 1.0)  # two screen pixels, in photo pixels
    parts = [f'<svg class="outline-overlay" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
             f'aria-hidden="true" focusable="false" xmlns="http://www.w3.org/2000/svg">']
    if polygon:
        points = escape(" ".join(f"{float(x):.1f},{float(y):.1f}" for x, y in polygon))
        if margin_px:
            m = float(margin_px)
            mask = f"outline-margin-{escape(key)}"
            parts += [
                f'<defs><mask id="{mask}" maskUnits="userSpaceOnUse" x="0" y="0" width="{width}" height="{height}">'
                f'<polygon points="{points}" fill="#fff" stroke="#fff" stroke-width="{2 * (m + lw):.1f}" '
                f'stroke-linejoin="round"/>'
                f'<polygon points="{points}" fill="#000" stroke="#000" stroke-width="{2 * m:.1f}" '
                f'stroke-linejoin="round"/></mask></defs>',
                f'<g opacity="0.22"><polygon class="site-region" points="{points}" fill="{SITE_COLOUR}" '
                f'stroke="{SITE_COLOUR}" stroke-width="{2 * m:.1f}" stroke-linejoin="round"/></g>',
                f'<rect class="site-edge" width="{width}" height="{height}" fill="{SITE_COLOUR}" mask="url(#{mask})"/>',
            ]
        parts.append(f'<polygon class="scar-outline" points="{points}" fill="none" stroke="{SCAR_COLOUR}" '
                     f'stroke-width="2" vector-effect="non-scaling-stroke"/>')
    parts.append(f'<polyline class="draft" points="" fill="none" stroke="{DRAFT_COLOUR}" stroke-width="2" '
                 f'stroke-dasharray="6 3" vector-effect="non-scaling-stroke"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
