"""Floor 4: the ``roster`` command line."""
