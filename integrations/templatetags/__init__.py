"""Template libraries, one per subject, each loaded by its module name (`{% load figures %}`)."""
