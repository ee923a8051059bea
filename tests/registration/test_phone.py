"""Phone photos against synthetic truth: skin with surroundings, a card, another background."""

import cv2
import numpy as np
import pytest

from registration import analyze_pair, detect_modality, segment_skin, site_region
from registration._imageutil import _analysis_scale
from registration.phone_synth import make_phone_pair

# Moderate phone captures, so that each test checks one thing: the card, the background, the papule.
CAPTURE = dict(scale_range=(0.8, 1.25), max_tilt=15.0, rotation=40.0, flash=False)


def _grid_error(found, truth, skin_moving):
    """Median distance (px) between where `found` and `truth` send the follow-up's skin."""
    ys, xs = np.nonzero(skin_moving[::8, ::8])
    points = np.stack([xs * 8, ys * 8, np.ones(len(xs))]).astype(np.float64)
    a, b = np.asarray(found) @ points, np.asarray(truth) @ points
    return float(np.median(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0)))


def _pair(make_skin, seed, **options):
    image, lesion = make_skin(seed, shape=(480, 640))
    return make_phone_pair(image, lesion_mask=lesion, rng=np.random.default_rng(seed), **options, **CAPTURE)


@pytest.mark.parametrize("seed", [3, 11])
def test_a_card_that_moves_does_not_carry_the_alignment(make_skin, seed):
    """The card is the most contrasted thing in both frames, at different places: a fit on it
    is a wrong alignment of the skin, and where it was or now lies is no change (the code
    before skin segmentation flagged these pairs). The skin carries the fit, to within a pixel."""
    pair = _pair(make_skin, seed, card="moved", background="fabric")
    result = analyze_pair(pair.reference_image, pair.moving_image)
    assert result.registered
    assert _grid_error(result.homography, pair.homography, pair.params["moving_skin"]) <= 1.0
    assert not result.flag


@pytest.mark.parametrize("background", ["drape", "wood", "dark"])
def test_another_background_and_clothing_are_not_a_change(make_skin, background):
    pair = _pair(make_skin, 5, background=background)
    result = analyze_pair(pair.reference_image, pair.moving_image)
    assert result.registered
    assert not result.flag
    # The comparison stays on skin: nothing of the surroundings is compared.
    skin = pair.params["skin"]
    assert (result.valid_mask & ~skin).sum() <= 0.01 * result.valid_mask.sum()


def test_a_new_pink_papule_in_the_site_is_found(make_skin):
    """Most recurrences after BCC and SCC are pink, not dark."""
    pair = _pair(make_skin, 8, kind="new_lesion", donor="pink", background="drape")
    result = analyze_pair(pair.reference_image, pair.moving_image)
    assert result.flag and result.site_flag
    assert any(r["in_site"] for r in result.regions)
    found = result.change_mask & pair.change_mask
    assert found.sum() >= 0.3 * pair.change_mask.sum()


def test_a_photo_of_something_else_is_refused_with_a_reason(skin):
    """A keyboard-grey, blue-patterned object is not skin: refused, never 'no change'."""
    rng = np.random.default_rng(0)
    thing = np.zeros((480, 640, 3), np.uint8)
    thing[:] = (70, 90, 150)
    for _ in range(60):
        x, y = rng.integers(0, 600), rng.integers(0, 440)
        cv2.rectangle(thing, (int(x), int(y)), (int(x) + 30, int(y) + 30), (200, 200, 205), -1)
    result = analyze_pair(skin[0], thing)
    assert not result.flag
    assert not result.quality.usable or not result.registered
    assert any("skin" in r for r in result.reasons)


@pytest.mark.parametrize("factor", [1.15, 0.9, 0.7, 0.5, 0.35, 0.25])
def test_skin_is_segmented_across_skin_tones(make_skin, factor):
    """Fitzpatrick I to VI differ mostly in lightness and saturation, not in hue: the skin
    (lesion included) is found on a blue drape, and a white card on it is left out."""
    image, lesion = make_skin(21, shape=(480, 640))
    image = np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)
    scene = np.empty_like(image)
    scene[:] = (40, 80, 160)
    body = np.zeros(image.shape[:2], bool)
    body[:, 100:560] = True
    scene[body] = image[body]
    card = np.zeros(body.shape, bool)
    card[40:140, 420:540] = True
    scene[card] = 245
    scene[60:120, 440:500] = 10  # the card's marker
    skin = segment_skin(scene)
    truth = body & ~card
    assert skin[truth].mean() >= 0.9
    assert skin[lesion].mean() >= 0.9
    assert skin[~body].mean() <= 0.02
    assert skin[card].mean() <= 0.1


def test_modality_is_told_from_the_corners(skin):
    h, w = skin[0].shape[:2]
    yy, xx = np.mgrid[:h, :w]
    vignette = np.clip(1.3 - np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2)), 0, 1)
    dermoscopy = (skin[0] * vignette[..., None] ** 2).astype(np.uint8)
    assert detect_modality(dermoscopy) == "dermoscopy"
    assert detect_modality(skin[0]) == "clinical"
    with pytest.raises(ValueError, match="modality"):
        analyze_pair(skin[0], skin[0], modality="x-ray")


def test_site_region_adds_the_margin_around_the_outline():
    outline = np.zeros((200, 200), bool)
    outline[90:110, 90:110] = True
    region = site_region(outline, margin_px=30)
    assert region[outline].all()
    assert region[100, 135] and not region[100, 145]
    with pytest.raises(ValueError):
        site_region(outline, margin_px=-1)


@pytest.mark.parametrize("side, analysed", [(180, 180), (300, 480), (1000, 640), (4000, 640)])
def test_small_phone_crops_are_enlarged_but_not_thumbnails(side, analysed):
    """A 300-px phone crop is compared at 480 px (a small spot must outlast the filters); a
    180-px thumbnail has no detail to gain, and enlarged its re-captures look changed."""
    scale = _analysis_scale((side, side, 3), upscale=True)
    assert round(side * scale) == analysed
