"""Floor 4: how Roster's flows run as a service. Nothing imports this package."""
