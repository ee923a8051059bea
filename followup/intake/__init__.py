"""An upload arrives: checked and cleaned, stored as a queued photo, the scar outlined on a baseline."""
