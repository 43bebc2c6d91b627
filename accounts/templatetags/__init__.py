"""Template tags of accounts: the audit log in words and moments in time."""
