"""An analysis becomes work for a dermatologist: alerts raised, claimed and resolved; their outcomes."""
