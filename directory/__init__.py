"""Floor 1: the directory (source of truth), its configuration and its store."""
