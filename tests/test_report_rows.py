"""ReportRows: a run's drift rows as a sequence Prefect does not walk at the flow's end."""

from __future__ import annotations

import json
import pickle

from prefect.utilities.collections import visit_collection

from tasks.report import ReportRows, jsonable

ROWS = [{"user": f"user{i:04}", "action": "create", "old": None} for i in range(3)]


def test_reads_like_the_list_it_holds() -> None:
    rows = ReportRows(ROWS)
    assert rows == ROWS and rows == ReportRows(list(ROWS))
    assert rows != ROWS[:2] and rows != tuple(ROWS)
    assert len(rows) == 3 and rows[1]["user"] == "user0001" and rows[-1] is ROWS[-1]
    assert rows[:2] == ROWS[:2]
    assert [r["user"] for r in rows if r["action"] == "create"] == [r["user"] for r in ROWS]
    assert not ReportRows() and ReportRows() == []


def test_survives_json_and_pickle() -> None:
    result = {"apps": {"chat": {"drift": ReportRows(ROWS), "summary": {"created": 3}}}}
    assert json.loads(json.dumps(result, default=jsonable))["apps"]["chat"]["drift"] == ROWS
    assert pickle.loads(pickle.dumps(result)) == result


def test_prefect_does_not_visit_the_rows() -> None:
    """What the flow's end costs (``resolve_futures_to_states`` walks the return value):
    one visit for the rows, not one per row and value."""
    seen: list[object] = []
    visit_collection({"drift": ReportRows(ROWS * 100)}, visit_fn=seen.append)
    assert len(seen) <= 3
    seen.clear()
    visit_collection({"drift": ROWS * 100}, visit_fn=seen.append)
    assert len(seen) > 300  # the plain list: every row and value
