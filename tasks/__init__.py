"""Floor 2: extract, plan, apply and report: plain functions plus thin Prefect tasks."""
