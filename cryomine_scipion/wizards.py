"""CryoMine wizards (none yet)."""
