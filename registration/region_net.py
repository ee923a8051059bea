"""The learned region classifier for phone photos: nn.Modules and their config only (no I/O, no training loop).

A small multilayer perceptron that takes the measurements of one candidate change region of a phone photo pair
(:data:`registration.region_classifier.FEATURES`) and gives the logit that it is a clinically relevant change
(a new lesion, growth, darkening) rather than a confounder (a shadow, a second object, glare, cream, a fold) or
noise. Training: ``bench/train_region_classifier.py``; inference: :mod:`registration.region_classifier`.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class RegionNetConfig:
    n_features: int = 39    # len(registration.region_classifier.FEATURES)
    hidden: int = 32

    def to_dict(self):
        return asdict(self)


class RegionNet(nn.Module):
    """Region logits.

    ``forward(x, target=None)``: `x` float32 (B, n_features), raw measurements (standardised inside with the
    training set's mean and spread, kept as buffers); returns ``(logits (B,), loss)``, the loss the mean binary
    cross-entropy (``None`` without `target`, float32 (B,) of 0 and 1).
    """

    def __init__(self, config: RegionNetConfig):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.n_features))
        self.register_buffer("std", torch.ones(config.n_features))
        self.hidden = nn.Linear(config.n_features, config.hidden)
        self.out = nn.Linear(config.hidden, 1)

    def forward(self, x, target=None):
        logits = self.out(F.relu(self.hidden((x - self.mean) / self.std)))[:, 0]
        if target is None:
            return logits, None
        return logits, F.binary_cross_entropy_with_logits(logits, target)
