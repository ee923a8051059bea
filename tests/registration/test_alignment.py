import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose

from registration import align, make_pair


def _grid_points(shape, n=(7, 5)):
    h, w = shape
    xs, ys = np.meshgrid(np.linspace(0, w - 1, n[0]), np.linspace(0, h - 1, n[1]))
    return np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])


def _apply(matrix, points):
    p = matrix @ points
    return p[:2] / p[2]


@pytest.mark.parametrize("seed", range(6))
def test_known_homography_is_recovered(skin, seed):
    # The generator's full capture range: rotation +-45 deg, zoom 0.6-1.6,
    # tilt, stretch, exposure, white balance, blur, noise and JPEG.
    image, lesion = skin
    pair = make_pair(image, lesion_mask=lesion, rng=np.random.default_rng(seed), stretch_px=0.0)
    result = align(pair.reference_image, pair.moving_image)
    assert result.registered, pair.params
    points = _grid_points(pair.moving_image.shape[:2])
    truth = _apply(pair.homography, points)
    inside = (truth[0] >= 0) & (truth[0] <= image.shape[1] - 1) & \
             (truth[1] >= 0) & (truth[1] <= image.shape[0] - 1)
    assert inside.sum() >= 5
    assert_allclose(_apply(result.homography, points)[:, inside], truth[:, inside],
                    atol=0.5, err_msg=str(pair.params))


def test_exact_warp_is_recovered_to_subpixel(skin):
    image, _ = skin
    h, w = image.shape[:2]
    theta = np.deg2rad(25)
    truth = np.array([[0.9 * np.cos(theta), -0.9 * np.sin(theta), 60.0],
                      [0.9 * np.sin(theta), 0.9 * np.cos(theta), -40.0],
                      [1e-4, -5e-5, 1.0]])
    moving = cv2.warpPerspective(image, np.linalg.inv(truth), (w, h), flags=cv2.INTER_CUBIC)
    result = align(image, moving)
    points = _grid_points((h, w))
    expected = _apply(truth, points)
    inside = (expected[0] >= 0) & (expected[0] < w) & (expected[1] >= 0) & (expected[1] < h)
    assert_allclose(_apply(result.homography, points)[:, inside], expected[:, inside], atol=0.5)


def test_same_photos_give_the_same_alignment(skin):
    # A clinician re-opening an analysis must see the same result: the random
    # parts of matching are seeded, whatever drew from OpenCV's generator before.
    image, lesion = skin
    pair = make_pair(image, lesion_mask=lesion, rng=np.random.default_rng(3))
    first = align(pair.reference_image, pair.moving_image).homography
    cv2.randu(np.empty((64, 64), np.float32), 0, 1)  # moves OpenCV's global generator
    second = align(pair.reference_image, pair.moving_image).homography
    assert np.array_equal(first, second)


def test_unrelated_photos_are_refused(skin, other_skin):
    result = align(skin[0], other_skin[0])
    assert not result.registered
    assert result.homography is None
    assert result.reasons


@pytest.mark.parametrize("bad, message", [
    (np.zeros((100, 100), np.uint8), "RGB"),
    (np.zeros((100, 100, 3), np.float64), "uint8"),
    (np.zeros((8, 8, 3), np.uint8), "pixels"),
])
def test_bad_input_raises(skin, bad, message):
    with pytest.raises(ValueError, match=message):
        align(skin[0], bad)
