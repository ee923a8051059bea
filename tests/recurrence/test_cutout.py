"""Whole phone photos are cut out around their lesion before scoring, as the training cut-outs were."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from recurrence.cutout import is_cutout, lesion_cutout


def _phone_photo(seed=3, shape=(300, 400)):
    """Textured skin with a brown lesion left of the centre and a small freckle in a corner; and the lesion."""
    rng = np.random.default_rng(seed)
    h, w = shape
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3)
    image = np.array([215, 170, 145], np.float32) * (1 + 0.04 * noise / noise.std())[..., None]
    yy, xx = np.mgrid[:h, :w]
    lesion = ((xx - 170) / 40.0) ** 2 + ((yy - 160) / 28.0) ** 2 < 1
    image[lesion] = [110, 70, 50]
    image[np.hypot(xx - 370, yy - 30) < 4] = [150, 100, 80]
    return np.clip(image, 0, 255).astype(np.uint8), lesion


def test_a_declared_phone_photo_is_cut_out_around_its_lesion():
    image, lesion = _phone_photo()
    cut, mask, how = lesion_cutout(image, modality="clinical")
    assert how == "found"
    ys, xs = np.nonzero(lesion)
    assert abs(cut.shape[0] - (np.ptp(ys) + 1)) <= 6 and abs(cut.shape[1] - (np.ptp(xs) + 1)) <= 6
    assert mask.shape == cut.shape[:2] and mask.mean() > 0.6
    assert (cut[~mask] == 0).all() and (cut[mask] > 0).any()
    assert is_cutout(cut)


def test_a_given_mask_is_used_and_other_images_stay_whole():
    image, lesion = _phone_photo()
    cut, mask, how = lesion_cutout(image, mask=lesion, modality="clinical")
    assert how == "mask" and mask.sum() == lesion.sum()
    for modality in (None, "dermoscopy"):  # undeclared or dermoscopy: scored whole, as trained
        same, same_mask, how = lesion_cutout(image, mask=lesion, modality=modality)
        assert how == "as_given" and same is image and same_mask is lesion
    already = cut.copy()
    assert lesion_cutout(already, modality="clinical")[2] == "as_given"


def test_a_phone_photo_with_nothing_standing_out_is_scored_whole():
    image = np.full((200, 260, 3), (215, 170, 145), np.uint8)
    same, mask, how = lesion_cutout(image, modality="clinical")
    assert how == "not_found" and same is image and mask is None


def test_bad_input():
    image, lesion = _phone_photo()
    with pytest.raises(ValueError):
        lesion_cutout(image, modality="phone-ish")
    with pytest.raises(ValueError):
        lesion_cutout(image, mask=lesion[:-1], modality="clinical")
    with pytest.raises(ValueError):
        lesion_cutout(image.astype(np.float32), modality="clinical")


def test_score_lesions_cuts_out_declared_phone_photos(tiny_checkpoint):
    from recurrence.predict import load_scorer

    scorer = load_scorer(tiny_checkpoint)
    image, lesion = _phone_photo()
    cut, mask, _ = lesion_cutout(image, mask=lesion, modality="clinical")
    declared, masked, whole = scorer.score_lesions([image, image, image], masks=[None, lesion, None],
                                                   modalities=["clinical", "clinical", None])
    assert masked == pytest.approx(scorer.score_lesion(cut, mask=mask), abs=1e-6)
    assert whole == pytest.approx(scorer.score_lesion(image), abs=1e-6)
    assert declared == pytest.approx(masked, abs=0.05)  # the outline found is the lesion's
    with pytest.raises(ValueError):
        scorer.score_lesions([image], modalities=[])


def test_score_manifest_reads_the_modality_column_and_says_how(tiny_checkpoint, tmp_path):
    from recurrence.predict import load_scorer, score_manifest

    image, _ = _phone_photo()
    Image.fromarray(image).save(tmp_path / "a.png")
    rows = [("phone", "clinical_phone"), ("derm", "dermoscopy"), ("unsaid", ""), ("odd", "x-ray")]
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "image", "modality"])
        w.writerows([(i, "a.png", m) for i, m in rows])
    score_manifest(tmp_path / "m.csv", tmp_path / "r.jsonl", scorer=load_scorer(tiny_checkpoint))
    lines = {d["image_id"]: d for d in map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())}
    assert lines["phone"]["lesion"] == "found"
    assert lines["derm"]["lesion"] == lines["unsaid"]["lesion"] == "as_given"
    assert lines["derm"]["malignancy_score"] == lines["unsaid"]["malignancy_score"]
    assert "modality" in lines["odd"]["error"] and "malignancy_score" not in lines["odd"]
