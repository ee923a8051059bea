import numpy as np

from registration import segment_lesion


def _photo(seed=0, shape=(360, 480)):
    """Skin with a pale pink lesion (barely darker than the skin) and dark dermoscope corners."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    image = np.empty((h, w, 3), np.float32)
    image[...] = (205, 165, 145)
    lesion = np.hypot(yy - h / 2, xx - w / 2) < 60
    image[lesion] = (200, 140, 135)
    image += rng.normal(0, 3, image.shape)
    radius = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    image *= np.clip(1.0 - 3.0 * (radius - 0.9), 0.2, 1.0)[..., None]  # a dermoscope's dark corners
    return np.clip(image, 0, 255).astype(np.uint8), lesion


def test_pale_lesion_is_found_and_vignetting_is_not():
    image, truth = _photo()
    mask = segment_lesion(image)
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.8


def test_plain_skin_has_no_lesion_bigger_than_a_speck():
    image, _ = _photo()
    image[...] = np.median(image[150:210, 200:280].reshape(-1, 3), axis=0).astype(np.uint8)
    assert segment_lesion(image).sum() < 0.01 * image.shape[0] * image.shape[1]
