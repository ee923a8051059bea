"""Model shapes, losses, encoders and metrics (no data needed)."""
import numpy as np
import pytest
import torch

from recurrence.data import DIAGNOSIS_GROUPS, diagnosis_indices
from recurrence.encoding import PATIENT_FEATURES, REGION_FEATURES, encode_answers, encode_patient, encode_region
from recurrence.metrics import apply_calibration, ece, fit_platt, roc_auc, threshold_for_sensitivity
from recurrence.model import ModelConfig, ScarWatchModel


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = ScarWatchModel(ModelConfig(image_size=32, crop_size=32, width=8, n_features=5))
    return m.eval()


def test_lesion_forward_shapes_and_loss(model):
    x = torch.randn(3, 3, 32, 32)
    h = torch.zeros(3, 12)
    logit, loss = model(x, h)
    assert logit.shape == (3,) and loss is None
    logit, loss = model(x, h, targets=torch.tensor([0.0, 1.0, 1.0]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    # history changes the logit (the history head is not dead)
    h2 = h.clone()
    h2[:, 4] = 1.0
    assert not torch.allclose(model(x, h)[0], model(x, h2)[0])


def test_diagnosis_head_adds_a_loss_and_ignores_unknown_labels():
    torch.manual_seed(0)
    m = ScarWatchModel(ModelConfig(image_size=32, crop_size=32, width=8, n_diagnoses=4)).eval()
    x, h, y = torch.randn(3, 3, 32, 32), torch.zeros(3, 12), torch.tensor([0.0, 1.0, 1.0])
    plain = m(x, h, targets=y)[1]
    unknown = m.lesion(x, h, y, diagnoses=torch.full((3,), -1))[1]
    assert torch.allclose(unknown, plain)
    known = m.lesion(x, h, y, diagnoses=torch.tensor([0, 3, -1]))[1]
    assert known > plain
    known.backward()
    assert m.lesion.diagnosis_head.weight.grad.abs().sum() > 0


def test_more_cnn_members_are_separate_nets_and_the_first_serves_the_change_head():
    m = ScarWatchModel(ModelConfig(image_size=32, crop_size=32, width=8, cnn_members=3))
    nets = m.lesion_nets
    assert len(nets) == 3 and len({id(n) for n in nets}) == 3
    assert m.change.lesion is nets[0]
    assert len(ScarWatchModel(ModelConfig(image_size=32, crop_size=32, width=8)).lesion_nets) == 1


def test_diagnosis_groups_join_the_sources_labels():
    rows = [{"label": "MEL"}, {"label": "melanoma"}, {"label": "ACK"}, {"label": "AK"}, {"label": "lupus"}]
    idx = diagnosis_indices(rows)
    assert idx[0] == idx[1] >= 0 and idx[2] == idx[3] >= 0 and idx[0] != idx[2]
    assert idx[4] == -1
    assert len(set(diagnosis_indices([{"label": lab} for labs in DIAGNOSIS_GROUPS.values() for lab in labs]))) \
        == len(DIAGNOSIS_GROUPS)


def test_change_forward_shapes_and_loss(model):
    f, b = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    meta = torch.zeros(4, len(REGION_FEATURES))
    logit, loss = model.change(f, b, meta)
    assert logit.shape == (4,) and loss is None
    _, loss = model.change(f, b, meta, targets=torch.ones(4))
    assert loss.item() > 0
    # siamese: the same weights embed both crops, so swapping them changes the output only via the head
    assert model.change.lesion is model.lesion


def test_feature_model_forward(model):
    z, loss = model.features(torch.randn(6, 5))
    assert z.shape == (6,) and loss is None


def test_encode_answers_yes_no_missing():
    v = encode_answers({"grew": True, "itch": "0", "bleed": None, "hurt": "", "changed": 1})
    assert v.tolist()[:10] == [1, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert encode_answers(None).sum() == 0


def test_encode_patient_known_and_unknown():
    named = dict(zip(PATIENT_FEATURES, encode_patient({"age": "60.0", "sex": "female", "region": "nose"})))
    assert named["age"] == 0.75 and named["age_known"] == 1 and named["sex_female"] == 1
    assert named["site_head_neck"] == 1 and named["site_trunk"] == 0
    # unknown, empty or nonsense values are "not known" (all zeros), never a guess
    assert encode_patient(None).sum() == 0
    assert encode_patient({"age": "", "sex": "", "region": "unknown"}).sum() == 0
    assert encode_patient({"age": "-3"}).sum() == 0


def test_encode_region_layout():
    r = {"bbox": [0, 0, 10, 10], "area_px": 100, "growth_pct": None, "delta_e": 10.0,
         "distance_to_lesion_px": 3.0, "kind": "growth", "score": 0.7}
    v = encode_region(r, diagnosis="bcc", years_since_surgery=2.0, answers={"bleed": True})
    assert v.shape == (len(REGION_FEATURES),) and v.dtype == np.float32
    named = dict(zip(REGION_FEATURES, v))
    assert named["kind_growth"] == 1 and named["growth_known"] == 0 and named["dx_bcc"] == 1
    assert named["years_known"] == 1 and named["bleed_yes"] == 1 and named["bleed_no"] == 0


def test_auc_and_calibration():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.4
    z = 3 * (y - 0.5) + rng.normal(0, 1.0, 400) + 4.0  # informative but badly offset
    assert roc_auc(y, z) > 0.85
    assert roc_auc([0, 1], [1, 0]) == 0.0 and roc_auc([0, 0, 1, 1], [1, 1, 1, 1]) == 0.5
    cal = fit_platt(z, y)
    p = apply_calibration(z, cal)
    assert p.min() >= 0 and p.max() <= 1
    assert ece(y, p) < ece(y, apply_calibration(z, None))  # calibration helps on the offset logits
    t = threshold_for_sensitivity(y, p, 0.95)
    assert (p[y] >= t).mean() >= 0.95
