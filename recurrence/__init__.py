"""Recurrence model: lesion malignancy and per-region recurrence scores (see MODEL_CARD.md)."""
__version__ = "1.3"
__all__ = ["__version__"]
