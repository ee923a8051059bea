import csv
import json

import numpy as np
import pytest
from PIL import Image

from registration import make_pair
from registration.batch import run_batch

CONTRACT_KEYS = {"pair_id", "registered", "homography", "change_score", "change_mask",
                 "recurrence_score", "flag", "quality", "reasons", "seconds"}


@pytest.fixture
def manifest(tmp_path, skin):
    image, lesion = skin
    rows = []
    for i, kind in enumerate(["new_lesion", "none"]):
        pair = make_pair(image, lesion_mask=lesion, kind=kind, rng=np.random.default_rng(40 + i),
                         rotation=20.0, scale_range=(0.9, 1.1))
        Image.fromarray(pair.reference_image).save(tmp_path / f"b{i}.png")
        Image.fromarray(pair.moving_image).save(tmp_path / f"f{i}.jpg", quality=92)
        rows.append({"pair_id": f"p{i}", "baseline": f"b{i}.png", "followup": f"f{i}.jpg"})
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    rows.insert(1, {"pair_id": "broken", "baseline": "b0.png", "followup": "broken.jpg"})
    rows.append({"pair_id": "missing", "baseline": "b0.png", "followup": "nowhere.jpg"})
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["pair_id", "baseline", "followup"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_run_batch_writes_contract_lines(tmp_path, manifest, skin):
    out = tmp_path / "results" / "res.jsonl"
    summary = run_batch(manifest, out, progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["pair_id"] for line in lines] == ["p0", "broken", "p1", "missing"]
    assert summary["pairs"] == 4 and summary["errors"] == 2
    errors = {line["pair_id"]: line for line in lines if "error" in line}
    assert set(errors) == {"broken", "missing"}
    assert all(set(e) == {"pair_id", "error"} and e["error"] for e in errors.values())
    good = [line for line in lines if "error" not in line]
    for line in good:
        assert CONTRACT_KEYS <= set(line)
        assert line["registered"] is True
        assert np.array(line["homography"]).shape == (3, 3)
        assert 0.0 <= line["change_score"] <= 1.0 and 0.0 <= line["recurrence_score"] <= 1.0
        assert set(line["quality"]) == {"usable", "reasons"}
        assert any("change score" in r for r in line["reasons"])
        mask = np.asarray(Image.open(out.parent / line["change_mask"]))
        assert mask.shape == skin[0].shape[:2]
        assert set(np.unique(mask)) <= {0, 255}
    by_id = {line["pair_id"]: line for line in good}
    assert by_id["p0"]["flag"] and not by_id["p1"]["flag"]


def test_run_batch_uses_recurrence_scorer_and_masks(tmp_path, manifest, skin):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(skin[1].astype(np.uint8) * 255).save(masks / "b0.png")
    calls = []

    def scorer(analysis, reference_image, aligned_image):
        calls.append(aligned_image.shape)
        return 0.42

    out = tmp_path / "res.jsonl"
    run_batch(manifest, out, lesion_masks_dir=masks, recurrence_scorer=scorer, progress=False)
    good = [json.loads(x) for x in out.read_text().splitlines() if '"error"' not in x]
    assert len(calls) == 2
    assert all(line["recurrence_score"] == 0.42 for line in good)
    assert not any("change score" in r for line in good for r in line["reasons"])


def test_run_batch_creates_the_change_masks_folder_it_is_given(tmp_path, manifest, skin):
    # The contract's --masks DIR: written to, created with its parents, anywhere; change_mask stays relative
    # to RESULTS' folder.
    out = tmp_path / "results" / "res.jsonl"
    masks = tmp_path / "elsewhere" / "change" / "masks"
    run_batch(manifest, out, change_masks_dir=masks, progress=False)
    good = [json.loads(x) for x in out.read_text().splitlines() if '"error"' not in x]
    assert len(good) == 2 and len(list(masks.glob("*.png"))) == 2
    for line in good:
        assert line["change_mask"].startswith("../elsewhere/change/masks/")
        assert (out.parent / line["change_mask"]).resolve().parent == masks.resolve()
    assert not (out.parent / "res_masks").exists()


def test_run_batch_rejects_manifest_without_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,a,b\n1,x,y\n")
    with pytest.raises(ValueError, match="pair_id"):
        run_batch(path, tmp_path / "out.jsonl", progress=False)


def _write_manifest(tmp_path, pairs):
    rows = []
    for i, (baseline, followup) in enumerate(pairs):
        Image.fromarray(baseline).save(tmp_path / f"sb{i}.png")
        Image.fromarray(followup).save(tmp_path / f"sf{i}.png")
        rows.append({"pair_id": f"s{i}", "baseline": f"sb{i}.png", "followup": f"sf{i}.png"})
    path = tmp_path / "sticker_manifest.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["pair_id", "baseline", "followup"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_run_batch_scale_from_the_sticker(tmp_path, make_skin):
    """Issue 15: a sticker in both photos (it moves with the skin), and one in the baseline only."""
    from registration import sticker

    image, lesion = make_skin(5, (600, 800))
    Hs = sticker.perspective_homography(width_px=170, centre=(130, 470), rotation_deg=10, tilt_deg=15)
    with_sticker, _ = sticker.place_sticker(image, Hs)
    both = make_pair(with_sticker, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(3),
                     rotation=10.0, scale_range=(0.95, 1.05))
    plain = make_pair(image, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(3),
                      rotation=10.0, scale_range=(0.95, 1.05))
    baseline_only, _ = sticker.place_sticker(plain.reference_image, Hs)
    manifest = _write_manifest(tmp_path, [(both.reference_image, both.moving_image),
                                          (baseline_only, plain.moving_image)])
    run_batch(manifest, tmp_path / "s.jsonl", progress=False)
    lines = {x["pair_id"]: x for x in map(json.loads, (tmp_path / "s.jsonl").read_text().splitlines())}
    baseline_scale = sticker.local_scale(Hs)
    follow_truth = sticker.local_scale(np.linalg.inv(both.homography) @ Hs)
    s0 = lines["s0"]
    assert s0["scale_source"] == "marker"
    assert abs(s0["scale_mm_per_px"] / follow_truth - 1) < 0.03
    assert s0["regions"]
    for region in s0["regions"]:
        assert region["area_mm2"] == pytest.approx(region["area_px"] * baseline_scale**2, rel=0.04)
        assert region["diameter_mm"] == pytest.approx(2 * np.sqrt(region["area_mm2"] / np.pi), rel=0.01)
        assert region["distance_to_scar_mm"] is None or region["distance_to_scar_mm"] >= 0
    s1 = lines["s1"]
    assert s1["scale_source"] == "marker" and s1["registered"]
    assert abs(s1["scale_mm_per_px"] / sticker.local_scale(np.linalg.inv(plain.homography) @ Hs) - 1) < 0.05
    assert any("from the baseline" in r for r in s1["scale_reasons"])


def test_run_batch_without_sticker_has_no_scale(tmp_path, manifest):
    out = tmp_path / "res.jsonl"
    run_batch(manifest, out, progress=False)
    for line in map(json.loads, out.read_text().splitlines()):
        if "error" in line:
            continue
        assert line["scale_mm_per_px"] is None and line["scale_source"] is None
        assert "no scale in this photo" in line["scale_reasons"]
        for region in line["regions"]:
            assert region["area_mm2"] is None and region["diameter_mm"] is None
            assert region["distance_to_scar_mm"] is None and region["area_px"] > 0
