"""Small server-drawn SVG charts and overlays (no script, no external library, CSP-safe)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 48, 16, 36


def timeline_chart(timeline: Sequence[dict[str, Any]]) -> Markup:
    """Changed area (bars, left axis) and scores (lines, right axis, 0–1) per photo over time.

    ``timeline`` items carry ``photo`` (with ``received_at``), ``changed_area`` (px), ``changed_area_mm2``
    (None without a scale), ``change_score`` and ``recurrence_score`` (None where the photo has no analysis).
    The bars are in mm² when any photo has a scale (a photo without one then has no bar, and says so), else in
    pixels. Returns an empty Markup with fewer than one analysed photo.
    """
    points = [t for t in timeline if t.get("analysis") is not None]
    if not points:
        return Markup("")
    times = [t["photo"].received_at.timestamp() for t in timeline]
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    in_mm = area_unit(timeline) == "mm²"
    key, unit = ("changed_area_mm2", "mm²") if in_mm else ("changed_area", "px")
    max_area = max([t.get(key) or 0 for t in points] + [1])

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
        f'<desc id="chart-desc">Changed area in {"mm²" if in_mm else "pixels"} (bars) and change and recurrence '
        f'scores (lines) for '
        f'{len(points)} analysed photos; the same figures are in the table below.</desc>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#555"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#555"/>',
        f'<line x1="{LEFT + plot_w}" y1="{TOP}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#555"/>',
    ]
    for frac in (0, 0.5, 1):
        y = TOP + (1 - frac) * plot_h
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#333">'
                     f'{_area_tick(max_area * frac, in_mm)}</text>')
        parts.append(f'<text x="{LEFT + plot_w + 6}" y="{y + 4:.1f}" font-size="11" fill="#333">{frac:.1f}</text>')
        if frac:
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
    parts.append(f'<text x="4" y="{TOP + 10}" font-size="11" fill="#333">{unit}</text>')
    parts.append(f'<text x="{WIDTH - 4}" y="{TOP + 10}" font-size="11" text-anchor="end" fill="#333">score</text>')
    bar_w = max(4.0, min(18.0, plot_w / max(1, len(timeline)) * 0.5))
    for t in points:
        day = escape(t["photo"].received_at.date())
        if t.get(key) is None:  # mm² chart, photo without a scale
            parts.append(f'<text x="{x(t):.1f}" y="{TOP + plot_h - 4:.1f}" font-size="10" text-anchor="middle" '
                         f'fill="#777"><title>{day}: no scale in this photo</title>?</text>')
            continue
        area = t[key]
        h = area / max_area * plot_h
        parts.append(f'<rect x="{x(t) - bar_w / 2:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}" fill="#9cc3e0"><title>{day}: '
                     f'{_area_tick(area, in_mm)} {unit} changed</title></rect>')
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


def area_unit(timeline: Sequence[dict[str, Any]]) -> str:
    """The unit of the timeline's changed area: mm² when a follow-up was measured with a scale, else px (a
    baseline has no changed area in any unit)."""
    measured = any(t.get("changed_area_mm2") is not None and getattr(t.get("analysis"), "comparison", None)
                   != "quality" for t in timeline)
    return "mm²" if measured else "px"


def _area_tick(value: float, in_mm: bool) -> str:
    return f"{value:,.1f}" if in_mm else f"{int(value):,}"


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


def _frame(title: str, desc: str, key: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{key}-title {key}-desc" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{key}-title">{escape(title)}</title>',
        f'<desc id="{key}-desc">{escape(desc)}</desc>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#555"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#555"/>',
    ]


def _share_axis(parts: list[str], label: str) -> None:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = TOP + (1 - frac) * plot_h
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#333">'
                     f'{frac * 100:.0f} %</text>')
        if frac:
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
    parts.append(f'<text x="4" y="{TOP - 4 if TOP > 12 else 10}" font-size="11" fill="#333">{escape(label)}</text>')


def ppv_chart(bands: Sequence[dict[str, Any]]) -> Markup:
    """Share of resolved alerts that needed action (PPV), one bar per recurrence-score band.

    ``bands`` items carry ``label`` (the band), ``n`` (resolved alerts) and ``real`` (of them, needing action).
    A band without alerts gets no bar, only its label and "n = 0". Empty Markup when no band has an alert.
    """
    if not any(b["n"] for b in bands):
        return Markup("")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame("Flags that were real, by score",
                   "Share of resolved alerts in each recurrence-score band that needed a visit or a biopsy "
                   "(positive predictive value); the same figures are in the table below.", "ppv")
    _share_axis(parts, "real")
    slot = plot_w / len(bands)
    for i, b in enumerate(bands):
        cx = LEFT + slot * (i + 0.5)
        parts.append(f'<text x="{cx:.1f}" y="{HEIGHT - 20}" text-anchor="middle" font-size="11" fill="#333">'
                     f'{escape(b["label"])}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="10" fill="#666">'
                     f'n = {b["n"]}</text>')
        if not b["n"]:
            continue
        share = b["real"] / b["n"]
        h = share * plot_h
        parts.append(f'<rect class="bar" x="{cx - slot * 0.3:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{h:.1f}" fill="#8a1010"><title>score {escape(b["label"])}: {b["real"]} of {b["n"]} '
                     f'needed action ({share * 100:.0f} %)</title></rect>')
        parts.append(f'<text x="{cx:.1f}" y="{TOP + plot_h - h - 4:.1f}" text-anchor="middle" font-size="11" '
                     f'fill="#333">{share * 100:.0f} %</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def calibration_chart(points: Sequence[dict[str, Any]]) -> Markup:
    """Calibration: mean recurrence score (x) against the share that needed action (y), one circle per score
    group (area by its number of alerts), with the diagonal a calibrated score would follow.

    ``points`` items carry ``score`` (mean score of the group, 0–1), ``real`` (share needing action, 0–1) and
    ``n``. Empty Markup without points.
    """
    points = [p for p in points if p["n"]]
    if not points:
        return Markup("")
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    side = min(plot_w, plot_h)

    def x(v: float) -> float:
        return LEFT + max(0.0, min(1.0, v)) * side

    def y(v: float) -> float:
        return TOP + (1 - max(0.0, min(1.0, v))) * side

    parts = _frame("Calibration of the recurrence score",
                   "Mean recurrence score of each group of resolved alerts against the share of them that "
                   "needed action; a calibrated score lies on the dashed diagonal.", "calibration")
    _share_axis(parts, "needed action")
    parts.append(f'<line class="diagonal" x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" '
                 f'stroke="#999" stroke-dasharray="5 4"/>')
    for frac in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{x(frac):.1f}" y="{HEIGHT - 20}" text-anchor="middle" font-size="11" '
                     f'fill="#333">{frac:.2f}</text>')
    parts.append(f'<text x="{x(0.5):.1f}" y="{HEIGHT - 4}" text-anchor="middle" font-size="11" fill="#333">'
                 f'recurrence score</text>')
    biggest = max(p["n"] for p in points)
    for p in points:
        r = 4 + 10 * (p["n"] / biggest) ** 0.5
        parts.append(f'<circle class="point" cx="{x(p["score"]):.1f}" cy="{y(p["real"]):.1f}" r="{r:.1f}" '
                     f'fill="#b35c00" fill-opacity="0.7"><title>mean score {p["score"]:.2f}: '
                     f'{p["real"] * 100:.0f} % of {p["n"]} needed action</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


DECISION_BINS = ((0, 4, "< 4 h"), (4, 12, "4–12 h"), (12, 24, "12–24 h"), (24, 48, "1–2 days"),
                 (48, 96, "2–4 days"), (96, None, "> 4 days"))


def decision_time_chart(hours: Sequence[float]) -> Markup:
    """How long from the photo's arrival to the dermatologist's decision: resolved alerts per time bin.

    ``hours`` are the delays in hours (one per resolved alert with a photo). Empty Markup without any.
    """
    if not hours:
        return Markup("")
    counts = [sum(1 for h in hours if lo <= h and (hi is None or h < hi)) for lo, hi, _ in DECISION_BINS]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(counts)
    parts = _frame("Time from photo to decision",
                   f"Resolved alerts by the time between the photo's arrival and the decision, {len(hours)} "
                   "alerts.", "decision")
    for frac in (0, 0.5, 1):
        yy = TOP + (1 - frac) * plot_h
        parts.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" fill="#333">'
                     f'{top * frac:.0f}</text>')
    parts.append('<text x="4" y="10" font-size="11" fill="#333">alerts</text>')
    slot = plot_w / len(DECISION_BINS)
    for i, ((_lo, _hi, label), n) in enumerate(zip(DECISION_BINS, counts)):
        cx = LEFT + slot * (i + 0.5)
        h = n / top * plot_h
        parts.append(f'<rect class="bar" x="{cx - slot * 0.3:.1f}" y="{TOP + plot_h - h:.1f}" '
                     f'width="{slot * 0.6:.1f}" height="{h:.1f}" fill="#9cc3e0"><title>{escape(label)}: {n} '
                     f'alert{"s" if n != 1 else ""}</title></rect>')
        parts.append(f'<text x="{cx:.1f}" y="{HEIGHT - 20}" text-anchor="middle" font-size="11" fill="#333">'
                     f'{escape(label)}</text>')
        if n:
            parts.append(f'<text x="{cx:.1f}" y="{TOP + plot_h - h - 4:.1f}" text-anchor="middle" font-size="11" '
                         f'fill="#333">{n}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
