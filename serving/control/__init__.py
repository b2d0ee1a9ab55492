"""The control plane: one module per resource family on a shared base (base.py), their
dispatcher (dispatch.py), what they ask of training (ports.py) and where resources are kept
(store.py: SQLite embedded, PostgreSQL distributed)."""
