"""The contract's command line, through app.test_cli_runner()."""
import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from followup import demo
from followup.db import db
from followup.models import Alert, Clinic, Photo, User
from registration import make_pair
from tests.helpers import skin_photo


def png(pixels) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_create_user_then_duplicate_is_refused(runner):
    result = runner.invoke(args=["create-user", "--email", "New@Example.org", "--password", "long-enough-pass",
                                 "--role", "dermatologist"])
    assert result.exit_code == 0, result.output
    user = db.session.execute(db.select(User)).scalar_one()
    assert user.email == "new@example.org" and user.role == "dermatologist"
    again = runner.invoke(args=["create-user", "--email", "new@example.org", "--password", "long-enough-pass",
                                "--role", "admin"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_create_user_rejects_a_short_password(runner):
    result = runner.invoke(args=["create-user", "--email", "a@b.org", "--password", "short", "--role", "admin"])
    assert result.exit_code != 0 and "12 characters" in result.output


def test_analyze_batch_writes_the_contract_format(runner, tmp_path):
    image, lesion = skin_photo(5)
    rows = []
    for i, kind in enumerate(("none", "new_lesion")):
        pair = make_pair(image, lesion_mask=lesion, kind=kind, rng=np.random.default_rng(i))
        Image.fromarray(pair.reference_image).save(tmp_path / f"p{i}_b.png")
        Image.fromarray(pair.moving_image).save(tmp_path / f"p{i}_f.jpg", quality=90)
        rows.append({"pair_id": f"p{i}", "baseline": f"p{i}_b.png", "followup": f"p{i}_f.jpg"})
    rows.append({"pair_id": "broken", "baseline": "missing.png", "followup": "p0_f.jpg"})
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["pair_id", "baseline", "followup"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "results" / "results.jsonl"
    result = runner.invoke(args=["analyze-batch", str(tmp_path / "manifest.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["pair_id"] for line in lines] == ["p0", "p1", "broken"]
    assert "error" in lines[2]
    for line in lines[:2]:
        assert set(line) >= {"pair_id", "registered", "homography", "change_score", "change_mask",
                             "recurrence_score", "flag", "quality", "reasons", "seconds"}
        assert 0 <= line["change_score"] <= 1 and 0 <= line["recurrence_score"] <= 1
        assert set(line["quality"]) >= {"usable", "reasons"}
        mask = Image.open(out.parent / line["change_mask"])
        assert mask.size == (image.shape[1], image.shape[0])
    assert lines[1]["flag"] and not lines[0]["flag"]


def test_analyze_batch_masks_is_the_change_masks_folder_and_is_created(runner, tmp_path):
    image, lesion = skin_photo(5)
    pair = make_pair(image, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(1))
    Image.fromarray(pair.reference_image).save(tmp_path / "b.png")
    Image.fromarray(pair.moving_image).save(tmp_path / "f.jpg", quality=90)
    (tmp_path / "manifest.csv").write_text("pair_id,baseline,followup\np1,b.png,f.jpg\n")
    lesion_masks = tmp_path / "lesions"
    lesion_masks.mkdir()
    Image.fromarray(lesion.astype(np.uint8) * 255).save(lesion_masks / "b.png")
    out, masks = tmp_path / "out" / "results.jsonl", tmp_path / "new" / "masks"
    result = runner.invoke(args=["analyze-batch", str(tmp_path / "manifest.csv"), "--out", str(out),
                                 "--masks", str(masks), "--lesion-masks", str(lesion_masks)])
    assert result.exit_code == 0, result.output
    line = json.loads(out.read_text())
    assert line["change_mask"].startswith("../new/masks/")
    assert (out.parent / line["change_mask"]).is_file() and [p.name for p in masks.iterdir()] == [
        line["change_mask"].rsplit("/", 1)[1]]
    missing = runner.invoke(args=["analyze-batch", str(tmp_path / "manifest.csv"), "--out", str(out),
                                  "--lesion-masks", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_seed_demo_builds_a_living_clinic(runner, monkeypatch):
    short = [s for s in demo.STORIES if s.name in ("Maria Silva", "Dan Murphy")]  # 2 patients, 3 follow-ups
    monkeypatch.setattr(demo, "STORIES", short)
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    assert "demo seeded in" in result.output
    assert db.session.execute(db.select(User).where(User.email == "derm@example.org")).scalar_one()
    statuses = [p.status for p in db.session.execute(db.select(Photo)).scalars()]
    assert len(statuses) == 2 + 3 and "queued" not in statuses and "processing" not in statuses
    assert db.session.execute(db.select(Alert)).first() is not None, "the demo queue is populated"
    again = runner.invoke(args=["seed-demo", "--if-empty"])
    assert "not seeded" in again.output
    assert len(list(db.session.execute(db.select(Clinic)).scalars())) == 1


def test_score_lesions_contract_format(runner, tmp_path):
    from recurrence.predict import default_checkpoint

    try:
        default_checkpoint()
    except FileNotFoundError:
        pytest.skip("no committed recurrence checkpoint yet")
    image, _ = skin_photo(11)
    Image.fromarray(image).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image_id,image\nA1,a.png\n")
    result = runner.invoke(args=["score-lesions", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert line["image_id"] == "A1" and 0 <= line["malignancy_score"] <= 1


def test_export_outcomes_writes_feedback_lines_and_is_audited(runner, tmp_path, world, site_id):
    from followup.intake.photos import receive_photo
    from followup.models import AuditEvent, Site

    image, lesion = skin_photo(31)
    site = db.session.get(Site, site_id)
    receive_photo(site, png(image), kind="baseline")
    pair = make_pair(image, lesion_mask=lesion, kind="new_lesion", rng=np.random.default_rng(2), rotation=10.0)
    photo = receive_photo(site, png(pair.moving_image), kind="followup", answers={"bleed": True})
    alert = db.session.execute(db.select(Alert).where(Alert.photo_id == photo.id)).scalar_one()
    alert.status, alert.outcome = "resolved", "biopsy"
    db.session.commit()
    result = runner.invoke(args=["export-outcomes", "--out", str(tmp_path / "fb")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "fb" / "outcomes.jsonl").read_text().splitlines()]
    assert lines and all(line["outcome"] == "biopsy" and line["answers"]["bleed"] is True for line in lines)
    assert (tmp_path / "fb" / lines[0]["followup_image"]).exists()
    assert set(lines[0]["region"]) >= {"bbox", "area_px", "kind"}
    assert db.session.execute(db.select(AuditEvent).where(AuditEvent.action == "export_outcomes")).scalar_one()


def test_score_lesions_bad_row_gets_its_own_error_line(runner, tmp_path):
    image, _ = skin_photo(12)
    Image.fromarray(image).save(tmp_path / "a.png")
    (tmp_path / "broken_mask.png").write_bytes(b"not a png")
    (tmp_path / "m.csv").write_text("image_id,image,mask\nBAD,a.png,broken_mask.png\nGOOD,a.png,\n")
    result = runner.invoke(args=["score-lesions", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    bad, good = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert bad["image_id"] == "BAD" and "error" in bad
    assert good["image_id"] == "GOOD" and 0 <= good["malignancy_score"] <= 1
