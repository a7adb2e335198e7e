"""Which httpx client: client CPU per request, sync ``httpx.Client`` vs ``httpx.AsyncClient``.

Both talk to the same standalone scim2-server (a separate process, so the server's CPU is
not counted), doing the same requests: a GET of one user and a filtered search.
Client CPU is ``time.process_time()`` of this process.

    python -m bench.client [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from tests.scim_apps import TOKEN, standalone_scim

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def seed(base: str) -> str:
    with httpx.Client(base_url=base, headers=HEADERS) as client:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bench"}
        return str(client.post("/Users", json=body).json()["id"])


def run_sync(base: str, user_id: str, n: int) -> float:
    with httpx.Client(base_url=base, headers=HEADERS) as client:
        client.get(f"/Users/{user_id}")
        start = time.process_time()
        for _ in range(n):
            client.get(f"/Users/{user_id}").raise_for_status()
        return (time.process_time() - start) / n


async def _run_async(base: str, user_id: str, n: int) -> float:
    async with httpx.AsyncClient(base_url=base, headers=HEADERS) as client:
        await client.get(f"/Users/{user_id}")
        start = time.process_time()
        for _ in range(n):
            (await client.get(f"/Users/{user_id}")).raise_for_status()
        return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with standalone_scim(["bench"]) as root:
        base = f"{root}/bench/v2"
        user_id = seed(base)
        sync_ms, async_ms = [], []
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits both
            sync_ms.append(run_sync(base, user_id, args.requests) * 1000)
            async_ms.append(asyncio.run(_run_async(base, user_id, args.requests)) * 1000)
    print(f"requests per round: {args.requests}, rounds: {args.rounds}")
    print("| client | CPU ms per request (best) | (median) |")
    print("|---|---|---|")
    for name, values in (("httpx.Client", sync_ms), ("httpx.AsyncClient", async_ms)):
        values.sort()
        print(f"| {name} | {values[0]:.3f} | {values[len(values) // 2]:.3f} |")
    ratio = sorted(async_ms)[len(async_ms) // 2] / sorted(sync_ms)[len(sync_ms) // 2]
    print(f"async / sync (median): {ratio:.2f}")


if __name__ == "__main__":
    main()
