"""Reading and writing checkpoint files: tensors and plain values only.

A checkpoint is a dict of tensors, dicts, lists, strings, numbers, booleans and None. It is read with
``torch.load(weights_only=True)``, which rebuilds nothing else: a full unpickler would run whatever code a
tampered file names, and checkpoints travel between machines.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint stored at ``path``, on the CPU.

    Raises
    ------
    ValueError
        The file holds anything but tensors and plain values (an object to rebuild, a numpy array): it is
        refused unread, since rebuilding it could run code.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Lists the globals the file names, from its opcodes alone (nothing is run).
        names = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or "unknown objects"
        raise ValueError(f"{path} holds more than tensors and plain values ({names}); refused: rebuilding it "
                         "could run code. Keep checkpoint metadata to plain values.") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a checkpoint (a {type(ckpt).__name__}, not a dict)")
    return ckpt


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to ``path`` (folders created), then read it back as the app will: a value that is not
    plain fails the training run that wrote it, not the server that loads it later."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    load_checkpoint(path)
    return path
