"""Who may do what: users and roles, sessions, access tokens, OIDC sign-in, WebSocket tickets
and the start-up policy; the HTTP gate that uses them is ``orc/api/auth_gate.py``."""
