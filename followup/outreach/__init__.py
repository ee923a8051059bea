"""Texts to patients and staff: the outbox, reminders, consent, replies and the scheduler that sweeps."""
