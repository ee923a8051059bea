"""Recurrence model: nn.Modules and their config only (no I/O, no training loop).

Three modules share one small CNN appearance branch:

- ``LesionNet``: one lesion image (+ optional patient history) -> malignancy logit.
  Used alone by ``score-lesions``.
- ``ChangeNet``: siamese change head. For each changed region the follow-up crop and
  the aligned baseline crop go through the *same* appearance branch; their embeddings,
  their appearance logits and a vector of the region's measurements, the excised
  diagnosis, the time since surgery and the patient's answers give a recurrence logit.
- ``FeatureLogit``: logistic regression over hand-made colour/texture/shape features
  and history (standardised inside); ensembled with ``LesionNet``.

Every ``forward`` returns ``(output, loss)``; ``loss`` is ``None`` without targets.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoding import ANSWER_KEYS

N_ANSWERS = len(ANSWER_KEYS)
N_HISTORY = 2 * N_ANSWERS  # (yes, no) per answer; (0, 0) = missing


@dataclass
class ModelConfig:
    image_size: int = 96        # lesion image side fed to the CNN
    crop_size: int = 96         # change-region crop side
    width: int = 24             # channels of the first stage; stages use w, 2w, 4w, 8w
    n_history: int = N_HISTORY
    n_region: int = 29          # see recurrence.encoding.REGION_FEATURES
    n_features: int = 0         # hand-made features for FeatureLogit (0 = no feature model)
    n_diagnoses: int = 0        # auxiliary diagnosis-group head used in training only (0 = none)
    cnn_members: int = 1        # lesion CNNs whose malignancy logits are averaged (the first also serves the change head)
    feature_hidden: int = 64    # 0 = logistic regression
    feature_members: int = 5
    head_hidden: int = 64
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn(i: int, o: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class Block(nn.Module):
    """Residual basic block (two 3x3 convs) with a projection when shape changes."""

    def __init__(self, i: int, o: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(o)
        self.c2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(o)
        self.proj = None
        if stride != 1 or i != o:
            self.proj = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        y = self.b2(self.c2(y))
        s = x if self.proj is None else self.proj(x)
        return F.relu(y + s, inplace=True)


class Backbone(nn.Module):
    """Small ResNet-like CNN: (B,3,S,S) float -> (B, 8*width) embedding."""

    def __init__(self, width: int):
        super().__init__()
        w = width
        self.stem = _conv_bn(3, w, 2)
        self.stages = nn.Sequential(Block(w, w, 1), Block(w, 2 * w, 2), Block(2 * w, 4 * w, 2), Block(4 * w, 8 * w, 2))
        self.out_dim = 8 * w

    def feature_map(self, x):
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.feature_map(x).mean(dim=(2, 3))


class LesionNet(nn.Module):
    """Appearance branch + malignancy head. forward(images, history=None, targets=None)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config.width)
        d = self.backbone.out_dim
        self.drop = nn.Dropout(config.dropout)
        self.image_head = nn.Linear(d, 1)
        self.history_head = nn.Sequential(nn.Linear(config.n_history, 16), nn.ReLU(), nn.Linear(16, 1))
        # Telling melanoma from keratosis from nevus is a richer training signal than malignant/benign alone.
        self.diagnosis_head = nn.Linear(d, config.n_diagnoses) if config.n_diagnoses else None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def logit_from_embedding(self, emb: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        logit = self.image_head(self.drop(emb)).squeeze(-1)
        if history is not None:
            logit = logit + self.history_head(history).squeeze(-1)
        return logit

    def forward(self, images, history=None, targets=None, diagnoses=None, diagnosis_weight: float = 0.5):
        """``diagnoses``: (B,) long diagnosis-group indices, -1 = unknown; adds
        ``diagnosis_weight`` times their cross-entropy to the loss (needs ``n_diagnoses``)."""
        emb = self.embed(images)
        logit = self.logit_from_embedding(emb, history)
        loss = None
        if targets is not None:
            loss = F.binary_cross_entropy_with_logits(logit, targets.float())
            if diagnoses is not None and self.diagnosis_head is not None and (diagnoses >= 0).any():
                aux = F.cross_entropy(self.diagnosis_head(self.drop(emb)), diagnoses, ignore_index=-1)
                loss = loss + diagnosis_weight * aux
        return logit, loss


class ChangeNet(nn.Module):
    """Siamese change head sharing ``lesion``'s appearance branch.

    forward(followup_crops (B,3,C,C), baseline_crops (B,3,C,C), region (B,n_region), targets=None)
    -> recurrence logit (B,)
    """

    def __init__(self, config: ModelConfig, lesion: LesionNet):
        super().__init__()
        self.config = config
        self.lesion = lesion  # shared weights (registered once more as a submodule alias)
        d = lesion.backbone.out_dim
        h = config.head_hidden
        self.img_proj = nn.Sequential(nn.Linear(3 * d + 2, h), nn.ReLU())
        self.meta_proj = nn.Sequential(nn.Linear(config.n_region, h), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * h, h), nn.ReLU(), nn.Linear(h, 1))

    def forward_embeddings(self, emb_f, emb_b, region, targets=None):
        lf = self.lesion.logit_from_embedding(emb_f).unsqueeze(-1)
        lb = self.lesion.logit_from_embedding(emb_b).unsqueeze(-1)
        z = torch.cat([emb_f, emb_b, emb_f - emb_b, lf, lf - lb], dim=-1)
        x = torch.cat([self.img_proj(z), self.meta_proj(region)], dim=-1)
        logit = self.head(x).squeeze(-1)
        loss = None
        if targets is not None:
            loss = F.binary_cross_entropy_with_logits(logit, targets.float())
        return logit, loss

    def forward(self, followup, baseline, region, targets=None):
        emb = self.lesion.embed(torch.cat([followup, baseline], dim=0))
        emb_f, emb_b = emb.chunk(2, dim=0)
        return self.forward_embeddings(emb_f, emb_b, region, targets)


class FeatureLogit(nn.Module):
    """Model over hand-made features (buffers hold the standardisation mean/std).

    ``hidden == 0``: logistic regression. ``hidden > 0``: mean logit of ``members`` small MLPs
    (Linear-ReLU-Dropout-Linear), a cheap stand-in for gradient boosting on tabular features.
    """

    def __init__(self, n_features: int, hidden: int = 0, members: int = 1, dropout: float = 0.3):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        if hidden > 0:
            self.nets = nn.ModuleList(
                nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
                for _ in range(members))
        else:
            self.nets = nn.ModuleList([nn.Linear(n_features, 1)])

    def forward(self, features, targets=None, member: int | None = None):
        x = (features - self.mean) / self.std
        if member is not None:
            logit = self.nets[member](x).squeeze(-1)
        else:
            logit = torch.stack([net(x).squeeze(-1) for net in self.nets]).mean(0)
        loss = None
        if targets is not None:
            loss = F.binary_cross_entropy_with_logits(logit, targets.float())
        return logit, loss


class ScarWatchModel(nn.Module):
    """Container so one state_dict holds everything: .lesion, .change, optional .features."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.lesion = LesionNet(config)
        self.change = ChangeNet(config, self.lesion)
        self.features = (FeatureLogit(config.n_features, config.feature_hidden, config.feature_members)
                         if config.n_features > 0 else None)
        # Averaging small from-scratch CNNs steadies the malignancy score, which moves with initialisation.
        self.more_lesion = nn.ModuleList(LesionNet(config) for _ in range(config.cnn_members - 1))

    @property
    def lesion_nets(self) -> list[LesionNet]:
        """Every lesion CNN; the malignancy CNN logit is their mean."""
        return [self.lesion, *self.more_lesion]

    def forward(self, images, history=None, targets=None):
        """Lesion malignancy logit of the first CNN (training and tests; the Scorer averages every CNN)."""
        return self.lesion(images, history, targets)
