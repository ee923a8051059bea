"""The performance page's server-drawn charts: well-formed SVG, the figures plotted where they belong."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from followup.web.charts import DECISION_BINS, calibration_chart, decision_time_chart, ppv_chart

SVG = "{http://www.w3.org/2000/svg}"
BANDS = [{"label": "0.00–0.25", "n": 4, "real": 1}, {"label": "0.25–0.50", "n": 0, "real": 0},
         {"label": "0.50–0.75", "n": 2, "real": 2}, {"label": "0.75–1.00", "n": 3, "real": 3}]


def parse(markup) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg" and root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
    return root


def test_ppv_bars_are_the_share_of_real_flags_per_band():
    root = parse(ppv_chart(BANDS))
    bars = root.findall(f"{SVG}rect[@class='bar']")
    assert len(bars) == 3, "a band without alerts has no bar"
    heights = [float(b.get("height")) for b in bars]
    assert heights[1] == heights[2] == max(heights) and abs(heights[0] - heights[1] / 4) < 0.2
    assert "1 of 4 needed action (25 %)" in bars[0].find(f"{SVG}title").text
    assert ppv_chart([{**b, "n": 0, "real": 0} for b in BANDS]) == ""


def test_calibration_points_sit_at_score_and_share_with_the_diagonal():
    root = parse(calibration_chart([{"score": 0.1, "real": 0.25, "n": 4}, {"score": 0.9, "real": 1.0, "n": 3},
                                    {"score": 0.4, "real": 0.0, "n": 0}]))
    points = root.findall(f"{SVG}circle[@class='point']")
    assert len(points) == 2
    low, high = points
    assert float(low.get("cx")) < float(high.get("cx")) and float(low.get("cy")) > float(high.get("cy"))
    assert float(low.get("r")) > float(high.get("r")), "circle area by the number of alerts"
    assert root.find(f"{SVG}line[@class='diagonal']") is not None
    assert calibration_chart([]) == ""


def test_decision_time_bins_count_every_alert():
    hours = [1, 2, 5, 13, 30, 30, 50, 200]
    root = parse(decision_time_chart(hours))
    bars = root.findall(f"{SVG}rect[@class='bar']")
    assert len(bars) == len(DECISION_BINS)
    counts = [int(b.find(f"{SVG}title").text.split(": ")[1].split()[0]) for b in bars]
    assert counts == [2, 1, 1, 2, 1, 1] and sum(counts) == len(hours)
    assert decision_time_chart([]) == ""


def _point(day: int, comparison: str, px: int | None, mm2: float | None) -> dict:
    from datetime import datetime, timezone
    from types import SimpleNamespace

    return {"photo": SimpleNamespace(received_at=datetime(2026, 1, day, tzinfo=timezone.utc)),
            "analysis": SimpleNamespace(comparison=comparison), "changed_area": px, "changed_area_mm2": mm2,
            "change_score": 0.5, "recurrence_score": 0.4}


def test_timeline_shows_mm2_when_a_follow_up_has_a_scale_and_marks_one_without():
    from followup.web.charts import area_unit, timeline_chart

    timeline = [_point(1, "quality", 0, 0.0), _point(10, "baseline", 800, 12.5), _point(20, "baseline", 900, None)]
    assert area_unit(timeline) == "mm²"
    root = parse(timeline_chart(timeline))
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "2026-01-10: 12.5 mm² changed" in titles and "2026-01-20: no scale in this photo" in titles
    assert "mm²" in root.find(f"{SVG}desc").text
    in_px = [_point(1, "quality", 0, 0.0), _point(10, "baseline", 800, None)]
    assert area_unit(in_px) == "px"
    assert "2026-01-10: 800 px changed" in [t.text for t in parse(timeline_chart(in_px)).iter(f"{SVG}title")]
