import cv2
import numpy as np
import pytest

from registration.change import detect_change


def _skin(shape=(480, 640)):
    lab = np.empty(shape + (3,), np.float32)
    lab[...] = (65.0, 15.0, 20.0)
    return lab


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def _skin_with_lesion(centre, radius):
    """(baseline Lab image with a dark lesion, the lesion mask, an empty uint8 canvas to draw on)."""
    reference = _skin()
    shape = reference.shape[:2]
    lesion = _disc(shape, centre, radius)
    reference[lesion] = (45.0, 18.0, 22.0)
    return reference, lesion, np.zeros(shape, np.uint8)


@pytest.mark.parametrize("halo, found", [(0.0, True), (3.5, False)])
def test_a_region_must_be_visibly_different(halo, found):
    """A strong core inside a wide, barely visible red halo averages below ΔE2000 3: not a change."""
    reference = _skin()
    moving = reference.copy()
    shape = reference.shape[:2]
    moving[_disc(shape, (240, 320), 60), 1] += halo
    moving[_disc(shape, (240, 320), 7), 0] = 50.0
    lesion = _disc(shape, (240, 150), 30)
    result = detect_change(reference, moving, np.ones(shape, bool), lesion_mask=lesion)
    assert bool(result.regions) is found
    assert result.mask[240, 320] is np.bool_(found)


def test_hairs_leaving_the_lesion_edge_are_not_growth():
    """Two hairs side by side leave the lesion: a dark band wider than one hair, but no spreading lesion."""
    reference, lesion, hairs = _skin_with_lesion((240, 320), 90)
    moving = reference.copy()
    cv2.line(hairs, (380, 240), (470, 240), 1, 12)
    # dark-brown hair: the skin's colour at a lower light level
    moving[(hairs > 0) & ~lesion] = (50.0, 15.0 * 50 / 65, 20.0 * 50 / 65)
    result = detect_change(reference, moving, np.ones(lesion.shape, bool), lesion_mask=lesion)
    assert not [r for r in result.regions if r["kind"] == "growth"]


@pytest.mark.parametrize("shape_kind, found", [("spot", True), ("line", False)])
def test_a_small_new_spot_is_found_and_a_line_is_not(shape_kind, found):
    """A new dark spot narrower than the hair filter is an early recurrence; a line as dark is hair."""
    reference, lesion, mark = _skin_with_lesion((240, 200), 40)
    moving = reference.copy()
    if shape_kind == "spot":
        cv2.circle(mark, (420, 240), 5, 1, -1)
    else:
        cv2.line(mark, (380, 200), (470, 300), 1, 3)
    moving[mark > 0] = (35.0, 20.0, 18.0)
    result = detect_change(reference, moving, np.ones(lesion.shape, bool), lesion_mask=lesion)
    assert bool(result.regions) is found
    assert result.mask[mark > 0].any() is np.bool_(found)


def test_a_patchy_darkening_is_outlined_beyond_its_strong_core():
    """A blue-grey area that is strong at one end and faint over most of its length is outlined as a whole."""
    reference, lesion, _ = _skin_with_lesion((240, 320), 150)
    moving = reference.copy()
    moving[220:260, 180:225] += (-15.0, -6.0, -10.0)  # the strong core
    moving[220:260, 225:400] += (-3.0, -2.0, -4.0)  # faint, 175 px long
    result = detect_change(reference, moving, np.ones(lesion.shape, bool), lesion_mask=lesion)
    assert result.regions
    assert result.mask[225:255, 230:395].mean() > 0.9
    assert not result.mask[300:, :].any()  # the unchanged rest of the lesion


@pytest.mark.parametrize("clipped, found", [(False, True), (True, False)])
def test_a_hue_loss_where_the_follow_up_is_clipped_is_no_change(clipped, found):
    """Over-exposed skin loses red as its red channel clips (a* falls, L rises a little)."""
    reference, lesion, _ = _skin_with_lesion((240, 200), 40)
    shape = lesion.shape
    moving = reference.copy()
    patch = _disc(shape, (240, 450), 25)
    moving[patch] += (2.0, -14.0, -4.0)
    unclipped = np.zeros(shape, bool)
    saturated = (unclipped, _disc(shape, (240, 450), 28) if clipped else unclipped)
    result = detect_change(reference, moving, np.ones(shape, bool), lesion_mask=lesion,
                           saturated=saturated)
    assert bool(result.regions) is found
    assert result.mask[patch].any() is np.bool_(found)


def test_a_new_spot_on_clipped_baseline_skin_is_still_found():
    """Where the baseline is clipped only its hue is unsure: a new dark spot there still counts."""
    reference, lesion, _ = _skin_with_lesion((240, 200), 40)
    shape = lesion.shape
    moving = reference.copy()
    spot = _disc(shape, (240, 450), 12)
    moving[spot] = (35.0, 20.0, 18.0)
    saturated = (np.ones(shape, bool), np.zeros(shape, bool))
    result = detect_change(reference, moving, np.ones(shape, bool), lesion_mask=lesion,
                           saturated=saturated)
    assert [r["kind"] for r in result.regions] == ["new_lesion"]
    assert result.mask[spot].mean() > 0.5


def test_a_new_lesion_with_a_pale_brown_rim_is_not_mere_browning():
    """Its dark centre is a third of it: too little to darken it on average, enough to be a lesion."""
    reference, lesion, _ = _skin_with_lesion((240, 200), 60)
    shape = lesion.shape
    moving = reference.copy()
    new = _disc(shape, (240, 300), 20)
    moving[new, 2] += 12.0  # pale brown: b* up, lightness kept
    moving[_disc(shape, (240, 300), 11)] += (-10.0, 0.0, 0.0)
    result = detect_change(reference, moving, np.ones(shape, bool), lesion_mask=lesion)
    assert result.regions
    assert result.mask[new].mean() > 0.5
