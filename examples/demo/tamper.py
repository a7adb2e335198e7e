"""Edit two accounts behind Roster's back, as an app admin would (demo only)."""

from __future__ import annotations

import sys

import httpx

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def tamper(root: str, token: str, app: str, operation: dict) -> str:
    with httpx.Client(
        base_url=f"{root}/{app}/v2", headers={"Authorization": f"Bearer {token}"}
    ) as c:
        user = c.get("/Users", params={"count": 1, "startIndex": 3}).json()["Resources"][0]
        c.patch(f"/Users/{user['id']}", json={"schemas": [PATCH], "Operations": [operation]})
        return str(user["userName"])


if __name__ == "__main__":
    root, token = sys.argv[1], sys.argv[2]
    who = tamper(
        root, token, "chat", {"op": "replace", "path": "title", "value": "Chief Vibes Officer"}
    )
    print(f"  chat: {who}'s title set to 'Chief Vibes Officer'")
    who = tamper(root, token, "wiki", {"op": "replace", "path": "active", "value": False})
    print(f"  wiki: {who} deactivated")
