"""Run Roster's deployments in one process, without a work pool or worker (Prefect's ``serve``).

PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve [--interval 900]
"""

from __future__ import annotations

import argparse

from cli.prefect_env import apply_prefect_defaults

apply_prefect_defaults()

from prefect import serve  # noqa: E402

from flows.offboard import offboard  # noqa: E402
from flows.sync import sync  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=int, default=900, help="seconds between full syncs")
    args = parser.parse_args()
    serve(
        sync.to_deployment(name="sync-all", interval=args.interval),
        sync.to_deployment(name="sync-app"),
        offboard.to_deployment(name="offboard"),
    )


if __name__ == "__main__":
    main()
