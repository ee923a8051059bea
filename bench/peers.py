"""Plain OpenCV baselines that the benchmark measures side by side with ours.

Feature matching (SIFT or ORB) with Lowe's ratio test and a MAGSAC homography,
then a CIELAB colour difference after mean/std matching inside the overlap,
as described in shared/bench/README.md.
"""

import cv2
import numpy as np

#: Lab distance above which a pixel counts as changed.
_PEER_DELTA = 25.0
#: Share of the overlap that must change for the peer to flag the pair.
_PEER_FLAG_AREA = 0.005


def _detector(name):
    if name == "sift":
        return cv2.SIFT_create(nfeatures=4000), cv2.NORM_L2
    if name == "orb":
        return cv2.ORB_create(nfeatures=4000), cv2.NORM_HAMMING
    raise ValueError(f"unknown peer {name!r}; use 'sift' or 'orb'.")


def peer_analyze(reference_image, moving_image, *, method="sift"):
    """Analyse one pair the plain way.

    Parameters
    ----------
    reference_image, moving_image : ndarray, shape (M, N, 3), uint8
        Baseline and follow-up RGB photos.
    method : {'sift', 'orb'}

    Returns
    -------
    result : dict
        ``registered``, ``homography`` (3x3 list or None), ``change_score``
        (0-1), ``change_mask`` (bool array, baseline size), ``flag``.
    """
    h, w = reference_image.shape[:2]
    empty = {"registered": False, "homography": None, "change_score": 0.0,
             "change_mask": np.zeros((h, w), bool), "flag": False}
    detector, norm = _detector(method)
    grey_r = cv2.cvtColor(reference_image, cv2.COLOR_RGB2GRAY)
    grey_m = cv2.cvtColor(moving_image, cv2.COLOR_RGB2GRAY)
    kp_r, des_r = detector.detectAndCompute(grey_r, None)
    kp_m, des_m = detector.detectAndCompute(grey_m, None)
    if des_r is None or des_m is None or len(kp_r) < 4 or len(kp_m) < 4:
        return empty
    pairs = cv2.BFMatcher(norm).knnMatch(des_m, des_r, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < 4:
        return empty
    src = np.float32([kp_m[m.queryIdx].pt for m in good])
    dst = np.float32([kp_r[m.trainIdx].pt for m in good])
    matrix, inliers = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 3.0)
    if matrix is None or inliers is None or inliers.sum() < 8:
        return empty
    warped = cv2.warpPerspective(moving_image, matrix, (w, h))
    overlap = cv2.warpPerspective(np.full(moving_image.shape[:2], 255, np.uint8), matrix, (w, h)) > 0
    overlap &= warped.max(axis=2) > 10
    if overlap.sum() < 100:
        return dict(empty, registered=True, homography=matrix.tolist())
    lab_r = cv2.cvtColor(reference_image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    lab_m = cv2.cvtColor(warped.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    for c in range(3):
        r, m = lab_r[..., c][overlap], lab_m[..., c][overlap]
        lab_m[..., c] = (lab_m[..., c] - m.mean()) / (m.std() + 1e-6) * r.std() + r.mean()
    delta = cv2.GaussianBlur(np.linalg.norm(lab_r - lab_m, axis=2), (0, 0), 2.0)
    delta[~overlap] = 0
    mask = delta > _PEER_DELTA
    score = float(np.clip(np.percentile(delta[overlap], 99.5) / 100.0, 0, 1))
    return {"registered": True, "homography": matrix.tolist(), "change_score": score,
            "change_mask": mask, "flag": bool(mask.sum() > _PEER_FLAG_AREA * overlap.sum())}
