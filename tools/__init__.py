"""Training and evaluation tools for aerd (not part of the installed daemon)."""
