"""CryoMine viewers (one module per kind of result)."""
