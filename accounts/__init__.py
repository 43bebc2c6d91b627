"""Users, workspaces (the tenants), memberships and roles, the audit log, and typed requests."""
