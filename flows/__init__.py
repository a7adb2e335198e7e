"""Floor 3: Prefect flows that sequence the tasks (sync, offboard)."""
