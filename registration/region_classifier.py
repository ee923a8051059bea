"""The learned region classifier of phone (clinical) photo pairs: candidates, their measurements, the decision.

On a phone photo the rules' evidence (:func:`registration.change.change_evidence`) is gathered into candidate
regions at a lower hysteresis than dermoscopy's (faint, small new lesions made no region at all), and a small
net (:mod:`registration.region_net`, trained by ``bench/train_region_classifier.py`` on generated phone pairs of
the ``design`` patients, its decision chosen on the ``tune`` patients) tells each candidate's change from the
confounders (a shadow, a second object on the skin, glare, cream, a fold). Each kept region is still named and
measured by the rules (new spot, growth, darkening, redness; where).
"""

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .change import find_regions

#: The measurements of a candidate region, in the net's order. CIELAB units unless said; "ring": compared
#: skin within 7 px around the region; "skin": the baseline's median compared skin outside the scar.
FEATURES = (
    "log_area", "peak_smoothed", "mean_evidence", "log_mass", "delta_e",
    "darker", "bluer", "redder", "browner",
    "darker_p90", "bluer_p90", "redder_p90", "browner_p90",
    "diff_L", "diff_a", "diff_b", "ring_diff_L", "ring_diff_a", "ring_diff_b",
    "followup_contrast_L", "followup_contrast_a", "followup_contrast_b",
    "baseline_contrast_L", "baseline_contrast_a", "baseline_contrast_b",
    "followup_minus_skin_L", "followup_minus_skin_a", "followup_minus_skin_b", "chroma_minus_skin",
    "border_gradient_gain", "lightness_ratio", "shadow_residual",
    "log_distance_to_scar", "touches_scar", "inside_scar", "bbox_fill", "elongation",
    "max_evidence", "pair_peak_smoothed",
)
#: The committed checkpoint.
CHECKPOINT = Path(__file__).with_name("region_net.pt")
#: Whether phone (clinical) photos take their regions and score from this classifier. Off: on the bench side it
#: raised the change AUC (0.801 to 0.869) and the flag's specificity (0.807 to 0.928) but lowered the flag's
#: sensitivity (0.710 to 0.645); see the README (Phone photos and dermoscopy). Switching it on is a clinical
#: decision, not a tuning one.
USE_LEARNED_REGIONS = False


def enabled() -> bool:
    """Whether the classifier is switched on and its checkpoint installed."""
    return USE_LEARNED_REGIONS and CHECKPOINT.exists()

#: Reference long side that areas are normalised to (as in registration.change).
_UNIT_SIDE = 640.0


class _PairContext:
    """What every region of one pair shares: the skin colour, gradients, the distance to the scar."""

    def __init__(self, reference_lab, moving_lab, valid_mask, lesion_mask):
        self.ref, self.mov, self.valid, self.lesion = reference_lab, moving_lab, valid_mask, lesion_mask
        skin = valid_mask & ~lesion_mask
        source = reference_lab[skin] if skin.any() else reference_lab[valid_mask]
        self.skin = np.median(source, axis=0) if len(source) else np.zeros(3, np.float32)
        grad = lambda v: np.hypot(cv2.Sobel(v, cv2.CV_32F, 1, 0), cv2.Sobel(v, cv2.CV_32F, 0, 1))  # noqa: E731
        self.grad_mov, self.grad_ref = grad(moving_lab[..., 0]), grad(reference_lab[..., 0])
        self.unit = (_UNIT_SIDE / max(valid_mask.shape)) ** 2


def _region_features(ctx, sel, region, evidence, components, pair_peak):
    ref, mov, valid = ctx.ref, ctx.mov, ctx.valid
    x0, y0, x1, y1 = region["bbox"]
    pad = 8
    ys = slice(max(0, y0 - pad), y1 + pad + 1)
    xs = slice(max(0, x0 - pad), x1 + pad + 1)
    box = sel[ys, xs].astype(np.uint8)
    ring = (cv2.dilate(box, np.ones((15, 15), np.uint8)) > 0) & (box == 0) & valid[ys, xs]
    edge = (cv2.dilate(box, np.ones((3, 3), np.uint8)) > 0) & ~(cv2.erode(box, np.ones((3, 3), np.uint8)) > 0)
    inner = box > 0
    r_ref, r_mov, r_comp = ref[ys, xs], mov[ys, xs], components[ys, xs]
    if ring.sum() < 5:
        ring = valid[ys, xs] & ~inner
    mov_m, ref_m = r_mov[inner].mean(0), r_ref[inner].mean(0)
    if ring.any():
        mov_ring, ref_ring = r_mov[ring].mean(0), r_ref[ring].mean(0)
    else:
        mov_ring, ref_ring = mov_m, ref_m
    k = float(np.clip(mov_m[0] / max(ref_m[0], 1.0), 0, 2))
    py, px = np.nonzero(inner)
    cov = np.cov(np.stack([px, py])) if len(px) > 2 else np.eye(2)
    low, high = np.linalg.eigvalsh(cov)
    dist = region["distance_to_lesion_px"]
    border = (ctx.grad_mov[ys, xs][edge].mean() - ctx.grad_ref[ys, xs][edge].mean()) if edge.any() else 0.0
    comp = r_comp[inner]
    return np.array([
        np.log(region["area_px"] * ctx.unit), region["peak"], region["mean_evidence"], np.log1p(region["mass"]),
        region["delta_e"], *comp.mean(0), *np.percentile(comp, 90, axis=0),
        *(mov_m - ref_m), *(mov_ring - ref_ring), *(mov_m - mov_ring), *(ref_m - ref_ring),
        *(mov_m - ctx.skin), np.hypot(mov_m[1], mov_m[2]) - np.hypot(ctx.skin[1], ctx.skin[2]),
        border, k, np.hypot(mov_m[1] - ref_m[1] * k, mov_m[2] - ref_m[2] * k),
        np.log1p(min(dist, 500.0)), float(dist <= 2.0), float(ctx.lesion[ys, xs][inner].mean()),
        region["area_px"] / max((x1 - x0 + 1) * (y1 - y0 + 1), 1), np.sqrt(high / max(low, 1e-3)),
        float(evidence[ys, xs][inner].max()), pair_peak,
    ], np.float64)


def candidate_regions(reference_lab, moving_lab, valid_mask, evidence, components, extent_evidence, *,
                      lesion_mask, site_mask=None, high, low):
    """Candidate change regions of a phone pair and their measurements.

    Parameters
    ----------
    reference_lab, moving_lab : ndarray, shape (M, N, 3), float32
        CIELAB, the follow-up aligned and normalised.
    valid_mask, lesion_mask : ndarray, shape (M, N), bool
        Compared skin; the scar or lesion outline.
    evidence, components, extent_evidence : ndarray, float32
        :func:`registration.change.change_evidence` (clinical), shapes (M, N), (M, N, 4), (M, N).
    site_mask : ndarray, shape (M, N), bool, optional
    high, low : float
        Hysteresis thresholds (CIELAB units) that make the candidates.

    Returns
    -------
    labels : ndarray, shape (M, N), int32
        Each candidate's ``label``, 0 elsewhere.
    regions : list of dict
        As :func:`registration.change.detect_change`'s, without ``score``.
    features : ndarray, shape (len(regions), len(FEATURES)), float64
    peak : float
        The peak of the smoothed evidence outside lines.
    """
    if reference_lab.shape != moving_lab.shape or valid_mask.shape != reference_lab.shape[:2]:
        raise ValueError("reference_lab, moving_lab and valid_mask must share one (M, N) frame.")
    lesion_mask = np.asarray(lesion_mask, bool)
    _, labels, regions, smooth = find_regions(reference_lab, moving_lab, evidence, components, extent_evidence,
                                               lesion_mask=lesion_mask, site_mask=site_mask, clinical=True,
                                               high=high, low=low)
    peak = float(smooth.max()) if smooth.size else 0.0
    ctx = _PairContext(reference_lab, moving_lab, np.asarray(valid_mask, bool), lesion_mask)
    features = np.array([_region_features(ctx, labels == r["label"], r, evidence, components, peak)
                         for r in regions]).reshape(len(regions), len(FEATURES))
    return labels, regions, features, peak


@lru_cache(maxsize=2)
def load_region_net(path=CHECKPOINT):
    """The classifier in eval mode and its checkpoint's metadata (cached per path).

    Returns
    -------
    net : registration.region_net.RegionNet
    meta : dict
        The checkpoint without its weights: ``model_args``, ``features``, ``decision``, ``training``,
        ``metrics``, ``version``.
    """
    import torch

    from .region_net import RegionNet, RegionNetConfig

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    if tuple(checkpoint["features"]) != FEATURES:
        raise ValueError(f"{path} was trained on other region measurements; retrain it "
                         "(bench/train_region_classifier.py).")
    net = RegionNet(RegionNetConfig(**checkpoint["model_args"]))
    net.load_state_dict(checkpoint["model"])
    net.eval()
    return net, {k: v for k, v in checkpoint.items() if k != "model"}


def region_probability(features, *, net=None):
    """Probability that each candidate is a relevant change.

    Parameters
    ----------
    features : ndarray, shape (K, len(FEATURES)), float
    net : RegionNet, optional
        The committed one by default.

    Returns
    -------
    probability : ndarray, shape (K,), float64
    """
    import torch

    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != len(FEATURES):
        raise ValueError(f"features must be (K, {len(FEATURES)}); got {features.shape}.")
    if len(features) == 0:
        return np.zeros(0)
    if net is None:
        net = load_region_net()[0]
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(features))
    return torch.sigmoid(logits).double().numpy()


def calibrated(probability, decision):
    """The pair's (or a region's) calibrated change score from the classifier's probability."""
    p = np.clip(probability, 1e-4, 1 - 1e-4)
    z = np.clip(decision["a"] * np.log(p / (1 - p)) + decision["b"], -30, 30)
    return 1.0 / (1.0 + np.exp(-z))


def classify_change(reference_lab, moving_lab, valid_mask, evidence, components, extent_evidence, *,
                    lesion_mask, site_mask=None, net=None, decision=None):
    """Regions and score of a phone pair by the learned region classifier.

    A candidate that overlaps a region the rules find (hysteresis ``_HIGH``/``_LOW``) is kept at the
    classifier probability ``decision['region']``; one the rules do not back needs ``decision['unbacked']``
    (its probability counts times ``region / unbacked``): on real re-captures, where nothing changed, the
    faint candidates the rules leave out are what the classifier, trained on generated pairs, trusts least.

    Parameters are those of :func:`candidate_regions` (without the thresholds, which the checkpoint's
    ``decision`` holds), plus `net` and `decision` (the committed ones by default).

    Returns
    -------
    mask : ndarray, shape (M, N), bool
        Pixels of the kept regions.
    regions : list of dict
        The kept regions, highest score first; ``score`` calibrated, ``probability`` the classifier's.
    features : ndarray, shape (2,), float64
        The logit of the highest (discounted) region probability and the number of candidates.
    score : float
        The pair's calibrated change score.
    """
    if net is None or decision is None:
        loaded, meta = load_region_net()
        net = loaded if net is None else net
        decision = meta["decision"] if decision is None else decision
    labels, regions, features, _ = candidate_regions(
        reference_lab, moving_lab, valid_mask, evidence, components, extent_evidence, lesion_mask=lesion_mask,
        site_mask=site_mask, high=decision["candidate_high"], low=decision["candidate_low"])
    probability = region_probability(features, net=net)
    if regions:
        rules_mask = find_regions(reference_lab, moving_lab, evidence, components, extent_evidence,
                                   lesion_mask=np.asarray(lesion_mask, bool), site_mask=site_mask, clinical=True)[0]
        backed = np.array([bool(rules_mask[labels == r["label"]].any()) for r in regions])
    else:
        backed = np.zeros(0, bool)
    effective = effective_probability(probability, backed, decision)
    kept = []
    for region, p, e in zip(regions, probability, effective):
        if e >= decision["region"]:
            region = dict(region)
            region["probability"] = float(p)
            region["score"] = float(calibrated(e, decision))
            kept.append(region)
    mask = np.isin(labels, [r["label"] for r in kept]) if kept else np.zeros(labels.shape, bool)
    kept.sort(key=lambda r: -r["score"])
    top = float(effective.max()) if len(effective) else 0.0
    clipped = min(max(top, 1e-4), 1 - 1e-4)
    return (mask, kept, np.array([np.log(clipped / (1 - clipped)), float(len(regions))]),
            float(calibrated(top, decision)))


def effective_probability(probability, backed, decision):
    """Region probabilities with those the rules do not back discounted (see :func:`classify_change`).

    Parameters
    ----------
    probability : ndarray, shape (K,), float
    backed : ndarray, shape (K,), bool
    decision : dict
        ``region`` and ``unbacked``.

    Returns
    -------
    effective : ndarray, shape (K,), float64
    """
    probability = np.asarray(probability, np.float64)
    return np.where(backed, probability, probability * decision["region"] / decision["unbacked"])
