"""Regions and their sentences in millimetres (issue 15)."""

import math

import pytest

from registration import reasons_in_mm, region_mm

REGION = {"bbox": [0, 0, 20, 20], "area_px": 400, "growth_pct": None, "delta_e": 9.0,
          "distance_to_lesion_px": 60.0, "kind": "redness", "score": 0.9, "in_site": True}


def test_region_in_mm():
    mm = region_mm(REGION, 0.1)
    assert mm["area_mm2"] == pytest.approx(4.0)
    assert mm["diameter_mm"] == pytest.approx(2 * math.sqrt(4.0 / math.pi), abs=0.01)
    assert mm["distance_to_scar_mm"] == pytest.approx(6.0)
    assert region_mm(dict(REGION, distance_to_lesion_px=float("inf")), 0.1)["distance_to_scar_mm"] is None
    assert region_mm(REGION, None) == {"area_mm2": None, "diameter_mm": None, "distance_to_scar_mm": None}


def test_sentences_say_size_and_distance_in_mm():
    edge = dict(REGION, kind="new_lesion", area_px=900, distance_to_lesion_px=0.0, in_site=False)
    reasons = ["a new red area about 60 px from the lesion or scar",
               "a new dark spot at the edge of the lesion or scar (outside the watched site)",
               "the photo is slightly blurred"]
    assert reasons_in_mm(reasons, [REGION, edge], 0.1) == [
        "a new red area 2.3 mm across, 6 mm from the scar",
        "a new dark spot 3.4 mm across, at the edge of the lesion or scar (outside the watched site)",
        "the photo is slightly blurred"]
    assert reasons_in_mm(reasons, [REGION, edge], None) == reasons


def test_scale_from_the_scar_length_over_the_outline():
    from registration import scale_from_length

    assert scale_from_length([[0, 0], [30, 0], [30, 40], [0, 40]], 25.0) == pytest.approx(0.5)  # 50 px diagonal
    assert scale_from_length([[5, 5], [5, 5], [5, 5]], 25.0) is None
    with pytest.raises(ValueError, match="positive"):
        scale_from_length([[0, 0], [10, 0]], 0)


def test_carry_scale_through_a_zoom():
    import numpy as np

    from registration import carry_scale

    zoom = np.diag([0.5, 0.5, 1.0])  # the follow-up is twice as close: 2 follow-up px per baseline px
    assert carry_scale(0.1, zoom, (40, 30)) == pytest.approx(0.05)
