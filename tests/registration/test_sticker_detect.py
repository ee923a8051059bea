"""Finding the reference sticker: scale against a known homography, colour against a known cast,
and the bad inputs (two stickers, another marker, a curled or black-and-white print)."""

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose

from registration import sticker
from registration.sticker_detect import FLAGS, apply_colour_correction, colour_correction, detect_sticker, sticker_mask

SHARED = Path(os.environ.get("SCARWATCH_SHARED", Path(__file__).resolve().parents[3] / "shared"))
PHONE = SHARED / "data" / "phone"


@pytest.fixture(scope="module")
def photo(make_skin):
    return make_skin(11, (720, 960))[0]


def _placed(photo, **kw):
    kw.setdefault("centre", (480, 360))
    H = sticker.perspective_homography(**kw)
    out, mask = sticker.place_sticker(photo, H)
    return out, mask, H


@pytest.mark.parametrize("width_px,rotation,tilt,axis", [
    (80, 0, 0, 0), (120, 37, 20, 60), (200, 170, 30, 10), (350, -75, 30, 135), (250, 90, 45, 30)])
def test_scale_recovered_within_2_percent(photo, width_px, rotation, tilt, axis):
    image, _, H = _placed(photo, width_px=width_px, rotation_deg=rotation, tilt_deg=tilt, tilt_axis_deg=axis)
    d = detect_sticker(image)
    assert d.found and d.usable and d.flags == ()
    truth = sticker.local_scale(H)
    assert abs(d.scale_mm_per_px / truth - 1) < 0.02
    assert 0 < d.scale_uncertainty < 0.03
    assert abs(d.tilt_deg - tilt) < (10 if tilt >= 20 else 20)  # arccos is steep near 0
    corners = np.array([[0, 0], [40, 0], [40, 25], [0, 25]], float)
    assert_allclose(d.outline, cv2.perspectiveTransform(corners[None], H)[0], atol=1.5)


def test_scale_after_blur_and_jpeg(photo):
    image, _, H = _placed(photo, width_px=150, rotation_deg=15, tilt_deg=25, tilt_axis_deg=80)
    kernel = np.zeros((7, 7), np.float32)
    kernel[3, :] = 1 / 7  # horizontal motion blur, 7 px
    blurred = cv2.filter2D(image, -1, kernel)
    ok, buf = cv2.imencode(".jpg", blurred[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
    d = detect_sticker(decoded)
    assert d.usable
    assert abs(d.scale_mm_per_px / sticker.local_scale(H) - 1) < 0.03


def test_no_sticker_no_detection(make_skin):
    for seed in range(4):
        d = detect_sticker(make_skin(seed, (480, 640))[0])
        assert not d.found and not d.usable and d.scale_mm_per_px is None


@pytest.mark.parametrize("kelvin,ev", [(5000, 0.0), (8000, 0.0), (6500, 1.0), (6500, -1.0), (5000, -1.0),
                                       (8000, 1.0)])
def test_colour_correction_undoes_a_known_cast(photo, kelvin, ev):
    image, mask, _ = _placed(photo, width_px=300, rotation_deg=10, tilt_deg=15, tilt_axis_deg=0)
    cast = sticker.colour_cast(image, kelvin=kelvin, ev=ev)
    d = detect_sticker(cast)
    assert d.usable
    before = colour_correction(detect_sticker(image))
    assert before.median_delta_e < 1.0
    cc = colour_correction(d)
    assert cc.usable and cc.median_delta_e < 3.0
    # the skin outside the sticker comes back too (where the cast did not clip it)
    corrected = apply_colour_correction(cast, cc)
    skin = ~mask & (cast.max(axis=2) < 250)
    assert np.abs(corrected[skin].astype(int) - image[skin]).mean() < 4.0


def test_cast_without_correction_is_large(photo):
    image, _, _ = _placed(photo, width_px=300)
    d = detect_sticker(sticker.colour_cast(image, kelvin=5000))
    ident = np.eye(3)
    from registration.sticker_detect import _delta_e
    assert np.nanmedian(_delta_e(d.patches_rgb, ident)) > 5.0


def test_one_marker_covered_keeps_the_scale(photo):
    image, _, H = _placed(photo, width_px=220, rotation_deg=25, tilt_deg=20, tilt_axis_deg=45)
    right = sticker.marker_corners_mm(1)
    poly = cv2.perspectiveTransform(right[None], H)[0]
    covered = image.copy()
    cv2.fillConvexPoly(covered, np.round(poly).astype(np.int32), (205, 160, 140))  # a finger over it
    d = detect_sticker(covered)
    assert d.found and d.usable and "partly_covered" in d.flags
    assert abs(d.scale_mm_per_px / sticker.local_scale(H) - 1) < 0.03
    assert any("partly covered" in r for r in d.reasons)


def test_two_stickers_no_scale(photo):
    image, _, _ = _placed(photo, width_px=160, centre=(260, 360))
    image, _, _ = _placed(image, width_px=160, centre=(700, 360), rotation_deg=30)
    d = detect_sticker(image)
    assert d.found and not d.usable and d.scale_mm_per_px is None
    assert "two_stickers" in d.flags and any("two reference stickers" in r for r in d.reasons)


def test_foreign_marker_no_scale(photo):
    image, _, _ = _placed(photo, width_px=200, centre=(330, 360))
    other = cv2.aruco.generateImageMarker(sticker.aruco_dictionary(), 3, 60)
    pad = np.full((80, 80), 255, np.uint8)
    pad[10:70, 10:70] = other
    image[300:380, 700:780] = pad[..., None]
    d = detect_sticker(image)
    assert d.found and not d.usable and "foreign_marker" in d.flags


def test_greyscale_copy_is_refused(photo):
    image, mask, _ = _placed(photo, width_px=250, rotation_deg=5)
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    copy = image.copy()
    copy[mask] = grey[mask]
    d = detect_sticker(copy)
    assert d.found and not d.usable and "greyscale_copy" in d.flags
    cc = colour_correction(d)
    assert not cc.usable and any("black-and-white" in r for r in cc.reasons)


def test_curled_sticker_is_flagged(photo):
    # the right half folded 40 degrees away: drawn through another homography than the left half,
    # the two agreeing on the fold at x = 20 mm
    flat = sticker.perspective_homography(width_px=240, centre=(480, 360))
    bent = sticker.perspective_homography(width_px=240, centre=(480, 360), tilt_deg=40, tilt_axis_deg=90)
    hinge = np.array([[[20.0, 0], [20, 25]]])
    shift = (cv2.perspectiveTransform(hinge, flat)[0] - cv2.perspectiveTransform(hinge, bent)[0]).mean(0)
    bent = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]]) @ bent
    left, _ = sticker.place_sticker(photo, flat)
    right, _ = sticker.place_sticker(photo, bent)
    half = cv2.perspectiveTransform(np.array([[[20.0, -1], [41, -1], [41, 26], [20, 26]]]), bent)[0]
    sel = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillConvexPoly(sel, np.round(half).astype(np.int32), 1)
    image = left.copy()
    image[sel > 0] = right[sel > 0]
    d = detect_sticker(image)
    assert d.found and len(d.markers) == 2
    assert "curled" in d.flags and not d.usable and d.scale_mm_per_px is None


@pytest.mark.parametrize("tilt,axis", [(55, 0), (62, 45), (58, 90)])
def test_too_tilted_is_flagged(photo, tilt, axis):
    image, _, _ = _placed(photo, width_px=400, tilt_deg=tilt, tilt_axis_deg=axis, focal_px=3000)
    d = detect_sticker(image)
    assert d.found and "too_tilted" in d.flags and not d.usable
    assert abs(d.tilt_deg - tilt) < 3
    assert any("tilted" in r for r in d.reasons)


def test_tilt_within_the_limit_is_not_flagged(photo):
    image, _, _ = _placed(photo, width_px=400, tilt_deg=40, tilt_axis_deg=45, focal_px=3000)
    d = detect_sticker(image)
    assert d.usable and "too_tilted" not in d.flags


def test_sticker_mask_covers_the_sticker(photo):
    image, mask, _ = _placed(photo, width_px=200, rotation_deg=40)
    d = detect_sticker(image)
    m = sticker_mask(image.shape, d)
    assert m[mask].mean() > 0.99 and m.sum() < 1.3 * mask.sum()
    assert not sticker_mask(image.shape, detect_sticker(photo)).any()


def test_bad_input():
    with pytest.raises(ValueError):
        detect_sticker(np.zeros((100, 100), np.uint8))
    with pytest.raises(ValueError):
        detect_sticker(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(ValueError):
        colour_correction(detect_sticker(np.zeros((100, 100, 3), np.uint8)))
    assert set(FLAGS) >= {"too_tilted", "too_small", "curled", "partly_covered"}


@pytest.mark.skipif(not (PHONE / "manifest.csv").exists(), reason="shared phone photos are not here")
def test_no_false_detection_in_some_real_phone_photos():
    from registration.batch import load_rgb

    with open(PHONE / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[::40]
    for row in rows:
        assert not detect_sticker(load_rgb(PHONE / row["image"])).found, row["image"]


@pytest.mark.skipif(not (PHONE / "manifest.csv").exists(), reason="shared phone photos are not here")
def test_scale_on_a_real_phone_photo():
    from registration.batch import load_rgb

    with open(PHONE / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if int(r["width"]) >= 1000)
    image = load_rgb(PHONE / row["image"])
    h, w = image.shape[:2]
    H = sticker.perspective_homography(width_px=0.2 * w, centre=(0.3 * w, 0.7 * h), rotation_deg=-20,
                                       tilt_deg=25, tilt_axis_deg=30)
    placed, _ = sticker.place_sticker(image, H, light=0.8)
    d = detect_sticker(placed)
    assert d.usable and abs(d.scale_mm_per_px / sticker.local_scale(H) - 1) < 0.02


def test_pair_scale_carries_the_baseline_scale_through_the_alignment(photo):
    from registration.sticker_detect import StickerDetection, pair_scale

    image, _, Hs = _placed(photo, width_px=200, rotation_deg=15)
    reference = detect_sticker(image)
    follow_to_base = np.array([[0.5, 0, 10], [0, 0.5, 20], [0, 0, 1.0]])  # follow-up at twice the size
    none = StickerDetection(found=False)
    scale = pair_scale(reference, none, follow_to_base)
    assert scale["source"] == "marker"
    assert_allclose(scale["reference_mm_per_px"], sticker.local_scale(Hs), rtol=0.02)
    assert_allclose(scale["moving_mm_per_px"], 0.5 * sticker.local_scale(Hs), rtol=0.02)
    assert any("from the baseline" in r for r in scale["reasons"])
    own = pair_scale(none, reference, np.linalg.inv(follow_to_base))
    assert_allclose(own["moving_mm_per_px"], sticker.local_scale(Hs), rtol=0.02)
    assert_allclose(own["reference_mm_per_px"], 0.5 * sticker.local_scale(Hs), rtol=0.02)
    nothing = pair_scale(none, none, follow_to_base)
    assert nothing["source"] is None and nothing["moving_mm_per_px"] is None
    assert nothing["reasons"] == ["no scale in this photo"]


@pytest.mark.parametrize("print_size,same_print", [(1.0, True), (0.95, True), (0.8, False), (1.25, False)])
def test_pair_scale_refuses_stickers_printed_at_another_size(photo, print_size, same_print):
    from registration.sticker_detect import pair_scale

    reference = detect_sticker(_placed(photo, width_px=200, rotation_deg=15)[0])
    # The follow-up was taken from the same place, but its sticker was printed at another size.
    moving = detect_sticker(_placed(photo, width_px=200 * print_size, rotation_deg=-30)[0])
    scale = pair_scale(reference, moving, np.eye(3))
    if same_print:  # within the tolerance: a printer's "fit to page" is not caught
        assert scale["source"] == "marker" and scale["moving_mm_per_px"] is not None
        assert not any("wrong size" in r for r in scale["reasons"])
    else:
        assert scale["source"] is None and scale["moving_mm_per_px"] is None
        assert any("printed at the wrong size" in r for r in scale["reasons"])


def test_a_sticker_that_moves_between_photos_is_not_a_change(make_skin):
    from registration import analyze_pair, make_pair

    image, lesion = make_skin(21, (480, 640))
    pair = make_pair(image, lesion_mask=lesion, kind="none", rng=np.random.default_rng(8), rotation=10.0,
                     scale_range=(0.95, 1.05))
    base, base_mask = sticker.place_sticker(
        pair.reference_image, sticker.perspective_homography(width_px=130, centre=(110, 390), rotation_deg=5))
    follow, follow_mask = sticker.place_sticker(
        pair.moving_image, sticker.perspective_homography(width_px=120, centre=(520, 90), rotation_deg=-40,
                                                          tilt_deg=20))
    analysis = analyze_pair(base, follow)
    assert analysis.registered and not analysis.flag
    on = base_mask | (cv2.warpPerspective(follow_mask.astype(np.uint8), analysis.homography, (640, 480)) > 0)
    assert not (analysis.change_mask & on).any()


def test_sticker_covers_says_how_much_of_the_scar_it_hides(photo):
    from registration.sticker_detect import sticker_covers

    image, mask, _ = _placed(photo, width_px=160, rotation_deg=0, tilt_deg=0, tilt_axis_deg=0)
    d = detect_sticker(image)
    under, beside = np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    under[350:370, 470:490] = True  # the sticker's middle
    beside[100:140, 100:140] = True
    assert sticker_covers(under, d) == pytest.approx(1.0)
    assert sticker_covers(beside, d) == 0.0
    shift = np.array([[1.0, 0, 300], [0, 1, 0], [0, 0, 1]])  # the moving photo's sticker lands 300 px right
    assert sticker_covers(under, d, shift) == 0.0
    assert sticker_covers(under, detect_sticker(photo)) == 0.0
