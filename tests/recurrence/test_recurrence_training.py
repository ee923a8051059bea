"""Smoke training on generated images, checkpoint round trip, inference API, score-lesions format."""
import json

import numpy as np
import pytest
import torch

from recurrence import predict, train
from recurrence.checkpoint import load_checkpoint
from recurrence.predict import load_scorer, score_manifest
from tests.recurrence.recurrence_helpers import SMOKE_ARGS, make_lesion_image

REGION = {"bbox": [100, 100, 140, 150], "area_px": 1500, "growth_pct": 23.0, "delta_e": 9.0,
          "distance_to_lesion_px": 5.0, "kind": "new_lesion", "score": 0.8}


def test_checkpoint_is_self_describing(tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint)
    for k in ("model", "model_args", "preprocess", "thresholds", "calibration", "diagnosis_groups", "data_hash",
              "metrics", "version"):
        assert k in ck
    assert set(ck["thresholds"]) >= {"sensitivity_first", "specificity_first"}
    assert 0 <= ck["thresholds"]["specificity_first"] <= 1 and 0 <= ck["thresholds"]["sensitivity_first"] <= 1
    assert len(ck["data_hash"]) == 64
    assert "validation" in ck["metrics"]["lesion"] and "ablations_auc" in ck["metrics"]["change"]


def test_training_is_deterministic(tiny_lesions, tiny_checkpoint, tmp_path):
    out = tmp_path / "again.pt"
    args = list(SMOKE_ARGS)
    args[args.index("--change-pairs") + 1] = "32"
    train.main(["--data", str(tiny_lesions), "--out", str(out), "--seed", "0", *args])
    a = load_checkpoint(tiny_checkpoint)["model"]
    b = load_checkpoint(out)["model"]
    # the lesion CNN does not depend on the change-pair count: same seed -> same weights
    for k in a:
        if k.startswith("lesion."):
            assert torch.equal(a[k], b[k]), k


def test_round_trip_same_outputs(tiny_checkpoint):
    s1 = load_scorer(tiny_checkpoint)
    ck = load_checkpoint(tiny_checkpoint)
    from recurrence.predict import Scorer
    s2 = Scorer(ck)
    rng = np.random.default_rng(3)
    imgs = [make_lesion_image(rng, 80, mal)[0] for mal in (True, False, True)]
    a = s1.score_lesions(imgs)
    b = [s2.score_lesion(im) for im in imgs]
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert s1.version == ck["version"]
    assert all(0.0 <= p <= 1.0 for p in a)


def test_history_changes_score_and_reasons(tiny_checkpoint):
    s = load_scorer(tiny_checkpoint)
    rng = np.random.default_rng(4)
    img = np.repeat(np.repeat(make_lesion_image(rng, 64, True)[0], 4, 0), 4, 1)
    without = s.score_regions(img, img, [REGION])
    with_h = s.score_regions(img, img, [REGION], diagnosis="melanoma", years_since_surgery=1.2,
                             answers={"bleed": True, "grew": False}, mm_per_px=0.1)
    assert "patient reports bleeding" in with_h["reasons"]
    assert "patient reports bleeding" in with_h["regions"][0]["reasons"]
    assert not any("grew" in r and "patient" in r for r in with_h["reasons"])
    assert not any(r.startswith("patient") for r in without["reasons"])
    assert any("mm²" in r and "near the scar" in r for r in with_h["regions"][0]["reasons"])
    assert any("px" in r for r in without["regions"][0]["reasons"])
    assert with_h["regions"][0]["score"] != without["regions"][0]["score"]
    reg = with_h["regions"][0]
    assert 0 <= reg["score"] <= 1 and with_h["photo_score"] == pytest.approx(reg["score"])
    side = reg["crop_box"][2] - reg["crop_box"][0]
    assert reg["saliency"].dtype == np.float32 and reg["saliency"].shape == (side, side)
    assert with_h["operating_point"] == "sensitivity_first"
    spec = s.score_regions(img, img, [REGION], operating_point="specificity_first")
    assert spec["threshold"] == s.thresholds["specificity_first"]
    assert s.score_regions(img, img, [])["photo_score"] == 0.0


def test_bad_inputs_raise_value_error(tiny_checkpoint):
    s = load_scorer(tiny_checkpoint)
    with pytest.raises(ValueError):
        s.score_lesion(np.zeros((10, 10, 3), np.float32))
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError):
        s.score_regions(img, np.zeros((32, 64, 3), np.uint8), [REGION])
    with pytest.raises(ValueError):
        s.score_regions(img, img, [REGION], operating_point="lenient")


def test_checkpoint_of_another_feature_layout_is_refused(tiny_checkpoint, tmp_path):
    ck = load_checkpoint(tiny_checkpoint)
    ck["model_args"]["n_features"] -= 9  # as trained before patient facts were features
    torch.save(ck, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="older version"):
        load_scorer(tmp_path / "old.pt")


class _RunsCode:
    """Unpickling this calls ``open(path, "w")``: what a tampered checkpoint could do with any function."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_checkpoint_that_would_run_code_is_refused_unread(tiny_checkpoint, tmp_path):
    ck = load_checkpoint(tiny_checkpoint)
    ck["notes"] = _RunsCode(tmp_path / "ran")
    torch.save(ck, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="refused"):
        load_scorer(tmp_path / "tampered.pt")
    assert not (tmp_path / "ran").exists()


def test_shipped_checkpoint_holds_plain_values_only():
    from recurrence.predict import default_checkpoint

    assert load_checkpoint(default_checkpoint())["version"].startswith("recurrence-")


def test_score_manifest_contract(tiny_lesions, tiny_checkpoint, tmp_path):
    lines = (tiny_lesions / "manifest.csv").read_text().splitlines()
    manifest = tiny_lesions / "subset.csv"
    manifest.write_text("\n".join(lines[:6] + [lines[6].replace("img/", "missing/")]) + "\n")
    out = tmp_path / "res" / "out.jsonl"
    n = score_manifest(manifest, out, scorer=load_scorer(tiny_checkpoint))
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert n == len(recs) == 6
    assert [r["image_id"] for r in recs] == [f"img{i}" for i in range(6)]
    assert all(set(r) == {"image_id", "malignancy_score", "lesion"} for r in recs[:5])
    assert all(0.0 <= r["malignancy_score"] <= 1.0 for r in recs[:5])
    assert set(recs[5]) == {"image_id", "error"}


def test_report_renders_stored_metrics(tiny_checkpoint):
    from recurrence.report import markdown
    text = markdown(load_checkpoint(tiny_checkpoint))
    assert "source=isic" in text and "sensitivity_first" in text and "Ablations" in text


def test_the_newest_checkpoint_is_found_by_the_natural_order_of_names(tmp_path, monkeypatch):
    for name in ("recurrence-v2.pt", "recurrence-v10.pt", "recurrence-v1²2.pt"):  # "²": a digit to isdigit()
        (tmp_path / name).touch()
    monkeypatch.setattr(predict, "CHECKPOINT_DIR", tmp_path)
    monkeypatch.delenv("RECURRENCE_CHECKPOINT", raising=False)
    assert predict.default_checkpoint().name == "recurrence-v10.pt"
