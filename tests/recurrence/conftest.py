"""Fixtures for the recurrence tests: a tiny generated lesion folder and a tiny trained checkpoint."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.recurrence.recurrence_helpers import SMOKE_ARGS, make_lesion_image


@pytest.fixture(scope="session")
def tiny_lesions(tmp_path_factory) -> Path:
    """A shared-data-shaped folder: manifest.csv + images/masks, 3 sources, 32 generated images."""
    root = tmp_path_factory.mktemp("lesions")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    (root / "mask").mkdir()
    rows = []
    for i in range(32):
        src = ("isic", "pad", "ph2")[i % 3]
        mal = i % 2 == 0
        img, m = make_lesion_image(rng, 64, mal, cutout=(src == "pad"))
        Image.fromarray(img).save(root / "img" / f"{i}.png")
        mask = ""
        if src != "isic":
            Image.fromarray((m * 255).astype(np.uint8)).save(root / "mask" / f"{i}.png")
            mask = f"mask/{i}.png"
        hist = {k: "" for k in ("itch", "grew", "hurt", "changed", "bleed", "elevation")}
        facts = {"age": "", "sex": "", "region": ""}
        if src == "pad":
            hist.update(bleed=str(int(mal)), grew=str(int(rng.random() < 0.5)))
            facts = {"age": str(40 + i), "sex": ("male", "female")[i % 2], "region": ("face", "back")[i % 2]}
        rows.append({"source": src, "image_id": f"img{i}", "image": f"img/{i}.png", "mask": mask,
                     "label": "MEL" if mal else "NV", "malignant": int(mal), "group": f"g{i // 2}",
                     "modality": "dermoscopy", **facts, "fitzpatrick": "", **hist})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_lesions, tmp_path_factory) -> Path:
    from recurrence import train

    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train.main(["--data", str(tiny_lesions), "--out", str(out), "--seed", "0", *SMOKE_ARGS])
    return out
