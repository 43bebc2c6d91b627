"""manage.py commands: demo data, ingest keys, imports, key rotation, demo events."""
