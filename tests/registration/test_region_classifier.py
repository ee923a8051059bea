"""The learned region classifier of phone photos: its checkpoint, shapes, the net path on a synthetic papule."""

import numpy as np
import pytest
import torch

from registration import analyze_pair
from registration.phone_synth import make_phone_pair
from registration.region_classifier import CHECKPOINT, FEATURES, load_region_net, region_probability
from registration.region_net import RegionNet, RegionNetConfig


def test_the_checkpoint_is_small_self_describing_and_loads_as_weights_only():
    assert CHECKPOINT.stat().st_size < 5 * 2**20
    checkpoint = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"model", "model_args", "features", "decision", "training", "metrics", "version"} <= set(checkpoint)
    assert tuple(checkpoint["features"]) == FEATURES
    assert {"candidate_high", "candidate_low", "region", "unbacked", "a", "b"} <= set(checkpoint["decision"])
    assert "design-side" in checkpoint["training"]["data"] and "seed" in checkpoint["training"]
    net, meta = load_region_net()
    assert net.config.n_features == len(FEATURES)
    assert "model" not in meta


@pytest.mark.parametrize("k", [0, 1, 5])
def test_region_probability_gives_one_probability_per_candidate(k):
    rng = np.random.default_rng(k)
    p = region_probability(rng.normal(0, 1, (k, len(FEATURES))))
    assert p.shape == (k,)
    assert np.all((p >= 0) & (p <= 1))


def test_region_probability_refuses_the_wrong_number_of_measurements():
    with pytest.raises(ValueError, match="features must be"):
        region_probability(np.zeros((2, len(FEATURES) - 1)))


def test_forward_returns_logits_and_a_loss_only_with_targets():
    net = RegionNet(RegionNetConfig(n_features=4, hidden=3))
    logits, loss = net(torch.zeros(6, 4))
    assert logits.shape == (6,) and loss is None
    _, loss = net(torch.zeros(6, 4), torch.ones(6))
    assert loss.ndim == 0 and loss.item() > 0


def test_training_separates_a_simple_rule_in_seconds():
    from bench.train_region_classifier import train

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] > 0).astype(np.float32)
    net = train(x, y, hidden=8, epochs=150, seed=0)
    with torch.no_grad():
        predicted = torch.sigmoid(net(torch.from_numpy(x))[0]).numpy() > 0.5
    assert (predicted == y.astype(bool)).mean() >= 0.9


def test_a_new_pink_papule_is_found_by_the_learned_regions(make_skin, monkeypatch):
    """The phone path keeps the region the classifier believes, with the rules' description."""
    import registration.pipeline
    import registration.region_classifier as rc

    monkeypatch.setattr(rc, "USE_LEARNED_REGIONS", True)
    seen = []
    original = rc.classify_change
    monkeypatch.setattr(registration.pipeline, "classify_change", lambda *a, **k: seen.append(1) or original(*a, **k))
    image, lesion = make_skin(8, shape=(480, 640))
    pair = make_phone_pair(image, lesion_mask=lesion, rng=np.random.default_rng(8), kind="new_lesion",
                           donor="pink", background="drape", scale_range=(0.8, 1.25), max_tilt=15.0,
                           rotation=40.0, flash=False)
    result = analyze_pair(pair.reference_image, pair.moving_image)
    assert result.modality == "clinical"
    assert result.flag
    assert (result.change_mask & pair.change_mask).sum() >= 0.3 * pair.change_mask.sum()
    assert all(r["kind"] in ("new_lesion", "growth", "darkening", "redness", "other") for r in result.regions)
    assert result.reasons and "no relevant change" not in result.reasons[0]
    assert seen, "the learned path was not taken"


def test_the_learned_regions_are_off_by_default():
    import registration.region_classifier

    assert registration.region_classifier.USE_LEARNED_REGIONS is False


def test_candidates_the_rules_do_not_back_are_discounted():
    from registration.region_classifier import effective_probability

    decision = {"region": 0.3, "unbacked": 0.8}
    e = effective_probability(np.array([0.5, 0.5, 0.8]), np.array([True, False, False]), decision)
    np.testing.assert_allclose(e, [0.5, 0.5 * 0.3 / 0.8, 0.3])
