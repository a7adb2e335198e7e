"""Floor 1: how Roster talks to apps. Knows HTTP and wire models, nothing of Prefect or pandas."""
