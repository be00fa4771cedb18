"""Pure parsing and normalising of juhebot callbacks (no I/O)."""
