"""Apply progress reaches the Prefect UI (a progress artifact) and in-process listeners."""

from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from tasks.progress import ApplyProgress, add_listener


def test_progress_updates_the_artifact_and_the_listeners(prefect_harness: None) -> None:
    seen: list[tuple[str, int, int]] = []
    remove = add_listener(lambda app, done, total: seen.append((app, done, total)))

    @flow
    def applying() -> str:
        progress = ApplyProgress("Chat App", total=500)
        progress.start()
        for _ in range(3):
            progress.advance(250)  # the last one overshoots and is clamped
        return str(progress.artifact_id)

    try:
        artifact_id = applying()
    finally:
        remove()
    assert seen == [
        ("Chat App", 0, 500),
        ("Chat App", 250, 500),
        ("Chat App", 500, 500),
        ("Chat App", 500, 500),
    ]
    key = ArtifactFilter(key=ArtifactFilterKey(any_=["apply-chat-app"]))
    with get_client(sync_client=True) as client:  # the session server holds many more
        found = client.read_artifacts(artifact_filter=key, sort=ArtifactSort.CREATED_DESC)
    mine = [a for a in found if str(a.id) == artifact_id]
    assert mine and mine[0].type == "progress"
    assert float(mine[0].data) == 100.0


def test_nothing_to_apply_creates_no_artifact_and_reports_done() -> None:
    progress = ApplyProgress("chat", total=0)
    assert progress.percent == 100.0
