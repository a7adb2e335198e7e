"""Apply progress reaches the Prefect UI (a progress artifact) and in-process listeners."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from tasks import progress as progress_module
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


def test_the_artifact_is_updated_at_most_every_second_but_always_at_the_end(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each update is a call to the Prefect API: a fast apply of many batches sends a few,
    the listeners (the CLI's bar) still hear of every batch, and the last one always goes."""
    sent: list[float] = []
    real = progress_module.update_progress_artifact

    def update(artifact_id: object, progress: float) -> object:
        sent.append(progress)
        return real(artifact_id, progress=progress)  # type: ignore[arg-type]

    monkeypatch.setattr(progress_module, "update_progress_artifact", update)
    heard: list[int] = []
    remove = add_listener(lambda app, done, total: heard.append(done))

    @flow
    def applying() -> None:
        fast = ApplyProgress("fast", total=40)
        fast.start()
        for _ in range(40):
            fast.advance(1)
        slow = ApplyProgress("slow", total=3, every=0.0)
        slow.start()
        for _ in range(3):
            slow.advance(1)

    try:
        applying()
    finally:
        remove()
    assert heard == [0, *range(1, 41), 0, 1, 2, 3]
    assert sent[-4:] == [100.0, 33.3, 66.7, 100.0]  # "slow" sends every one
    assert len(sent) - 3 <= 2  # "fast": the end, and at most one more in under a second
