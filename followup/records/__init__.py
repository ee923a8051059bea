"""Who and what is followed: staff accounts, patients and their sites, follow-up plans, patient links."""
