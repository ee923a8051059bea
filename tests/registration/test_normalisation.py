import cv2
import numpy as np

from registration.normalisation import match_blur


def test_new_hair_does_not_make_a_soft_follow_up_look_sharp(skin):
    """A softer follow-up with new dark hair: the baseline is the sharper photo and is the one blurred."""
    image, _ = skin
    soft = cv2.GaussianBlur(image, (0, 0), 1.5)
    hairy = soft.copy()
    for i in range(8):
        cv2.line(hairy, (20 + 55 * i, 0), (60 + 45 * i, image.shape[0] - 1), (40, 30, 25), 2, cv2.LINE_AA)
    valid = np.ones(image.shape[:2], bool)
    reference, moving = match_blur(image, hairy, valid)
    assert np.array_equal(moving, hairy)
    assert not np.array_equal(reference, image)
