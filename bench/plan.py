"""Plan benchmark: ``plan_changes`` over N directory users and N linked app accounts.

Every user is linked and in scope; 10% of the accounts drifted in the app (one attribute
each, among title, displayName, familyName, department, manager and active), and another
5% differ only in the case of userName and email, which must plan as in sync. Targets are
DEFAULT_MAPPING's, manager reference included.

Each size runs in a fresh subprocess, so memory peaks of sizes never mix. In it, the
inputs are generated (numpy, column by column), freed temporaries are handed back to the
OS (``malloc_trim``), and the RSS high-water mark is reset (``/proc/self/clear_refs``) so
that getrusage then reports the peak while planning; one more, untimed, plan runs under
tracemalloc for the plan's own allocations. The baseline, timed in the same process, is
the bare join the plan cannot avoid (desired ⋈ links ⋈ actual, two pandas merges): the
ratio plan/join is what to compare between runs on a shared machine.

    python -m bench.plan [--sizes 100000 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.common import machine
from directory.config import DEFAULT_MAPPING, ENTERPRISE, WORK_EMAIL
from tasks.plan import PlannedAction, PlanRules, Situation, attribute_hash, plan_changes

TARGETS = tuple(DEFAULT_MAPPING)
MANAGER = f"{ENTERPRISE}:manager.value"
DEPARTMENT = f"{ENTERPRISE}:department"
#: The attribute each drifted account differs in, in turn.
DRIFTS = ("title", "displayName", "name.familyName", DEPARTMENT, MANAGER, "active")
DRIFT_SHARE = 0.10
CASE_ONLY_SHARE = 0.05
TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 1024**3
TARGET_SIZE = 1_000_000

GIVEN = ("Ann", "Bob", "Cat", "Dan", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lea")
FAMILY = ("Smith", "Jones", "Brown", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore")
TITLES = ("Engineer", "Senior Engineer", "Manager", "Analyst", "Designer", "Director")
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Legal", "Support", "Marketing", "People")


@dataclass
class Inputs:
    desired: pd.DataFrame
    actual: pd.DataFrame
    links: pd.DataFrame
    #: user_id -> the attribute that drifted
    drifted: dict[str, str]


# -- inputs ---------------------------------------------------------------------------------


def make_inputs(n: int, seed: int = 7) -> Inputs:
    """Inputs shaped as production builds them: object columns of str (None for missing).

    Like ``build_desired``, desired's externalId/userName share the user_id/user_name
    objects and manager holds the manager's user_id object; the app's side and the links
    hold their own string objects, as parsed from JSON or read from the database.
    """
    rng = np.random.default_rng(seed)
    text = _directory_text(n, rng)
    manager = np.where(np.arange(n) == 0, -1, (np.arange(n) - 1) // 10)  # 10 reports each
    user_ids, remote_ids = _hex_ids(n, rng), _hex_ids(n, rng)
    desired = _desired_frame(text, user_ids, manager)
    drift_at = rng.choice(n, size=int(n * DRIFT_SHARE), replace=False)
    drift_kind = np.arange(len(drift_at)) % len(DRIFTS)
    rest = np.setdiff1d(np.arange(n), drift_at)
    case_only = rng.choice(rest, size=int(n * CASE_ONLY_SHARE), replace=False)
    actual = _actual_frame(
        text, (user_ids, remote_ids), manager, (drift_at, drift_kind), case_only, rng
    )
    links = _links_frame(desired, user_ids, remote_ids)
    ids = desired["user_id"].to_numpy()
    drifted = {ids[i]: DRIFTS[k] for i, k in zip(drift_at, drift_kind, strict=True)}
    return Inputs(desired, actual, links, drifted)


def _hex_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """n random 32-hex-digit ids (uuid4().hex's shape) as a numpy StringDType array."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    chars = np.empty((n, 32), dtype=np.uint8)
    chars[:, 0::2], chars[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    return chars.view("S32").ravel().astype(np.dtypes.StringDType())


def _directory_text(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each text attribute as a StringDType array (compact); object columns come later."""
    strings = np.strings
    number = strings.zfill(np.arange(n).astype(np.dtypes.StringDType()), 7)
    user_name = strings.add("user", number)

    def pick(words: tuple[str, ...]) -> np.ndarray:
        vocabulary = np.array(words, dtype=np.dtypes.StringDType())
        return vocabulary[rng.integers(0, len(words), size=n)]

    given, family = pick(GIVEN), pick(FAMILY)
    return {
        "userName": user_name,
        "name.givenName": given,
        "name.familyName": family,
        "displayName": strings.add(strings.add(given, " "), family),
        WORK_EMAIL: strings.add(user_name, "@example.com"),
        "title": pick(TITLES),
        DEPARTMENT: pick(DEPARTMENTS),
        f"{ENTERPRISE}:employeeNumber": strings.add("E", number),
    }


def _desired_frame(
    text: dict[str, np.ndarray], user_ids: np.ndarray, manager: np.ndarray
) -> pd.DataFrame:
    n = len(user_ids)
    ids = user_ids.astype(object)
    names = text["userName"].astype(object)
    columns: dict[str, Any] = {
        "user_id": ids,
        "user_name": names,
        "in_scope": np.ones(n, dtype=bool),
        "userName": names.copy(),
        "externalId": ids.copy(),
    }
    for target in TARGETS:
        if target in text and target != "userName":
            columns[target] = text[target].astype(object)
    columns["active"] = np.full(n, True, dtype=object)
    columns[MANAGER] = np.where(manager >= 0, ids[manager], None)
    return pd.DataFrame(columns)[["user_id", "user_name", "in_scope", *TARGETS]]


def _actual_frame(
    text: dict[str, np.ndarray],
    ids: tuple[np.ndarray, np.ndarray],
    manager: np.ndarray,
    drift: tuple[np.ndarray, np.ndarray],
    case_only: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The app's accounts in the app's own order, with the drift and case noise applied."""
    user_ids, remote_ids = ids
    n = len(remote_ids)
    text = {**text, "externalId": user_ids}
    columns: dict[str, np.ndarray] = {"remote_id": remote_ids.astype(object)}
    for target in TARGETS:
        if target in text:
            columns[target] = text[target].astype(object)
    columns["active"] = np.full(n, True, dtype=object)
    columns[MANAGER] = np.full(n, None, dtype=object)
    has_manager = manager >= 0
    columns[MANAGER][has_manager] = remote_ids[manager[has_manager]].astype(object)
    drift_at, drift_kind = drift
    for k, target in enumerate(DRIFTS):
        at = drift_at[drift_kind == k]
        if target == "active":
            columns[target][at] = False
        elif target == MANAGER:  # another account's id: the root gets one, others change
            columns[target][at] = remote_ids[(manager[at] + 1) % n].astype(object)
        else:
            columns[target][at] = np.strings.add(text[target][at], " (app)").astype(object)
    for target in ("userName", WORK_EMAIL):
        columns[target][case_only] = np.strings.upper(text[target][case_only]).astype(object)
    order = rng.permutation(n)
    return pd.DataFrame({key: columns[key][order] for key in ["remote_id", *TARGETS]})


def _links_frame(
    desired: pd.DataFrame, user_ids: np.ndarray, remote_ids: np.ndarray
) -> pd.DataFrame:
    """Links as the store reads them (ordered by user_id), each with the hash of what was
    last written: the desired attributes, so every drift is the app's doing."""
    order = np.argsort(user_ids)
    return pd.DataFrame(
        {
            "user_id": user_ids[order].astype(object),
            "remote_id": remote_ids[order].astype(object),
            "attr_hash": attribute_hash(desired, TARGETS).to_numpy()[order],
            "status": np.full(len(order), "active", dtype=object),
        }
    )


def rules() -> PlanRules:
    """DEFAULT_MAPPING's targets, as ``PlanRules.for_app`` derives them."""
    return PlanRules(
        targets=TARGETS,
        references=frozenset({MANAGER}),
        case_insensitive=frozenset({"userName", WORK_EMAIL}),
    )


# -- checking ---------------------------------------------------------------------------------


def check_plan(plan: pd.DataFrame, inputs: Inputs) -> list[str]:
    """Exactly the drifted accounts are updated, each in its one drifted attribute."""
    problems: list[str] = []
    n = len(inputs.desired)
    actions = plan["action"].value_counts().to_dict()
    situations = plan["situation"].value_counts().to_dict()
    expected_actions = {PlannedAction.UPDATE: len(inputs.drifted)}
    expected_actions[PlannedAction.NONE] = n - len(inputs.drifted)
    expected_situations = {Situation.DRIFTED: len(inputs.drifted)}
    expected_situations[Situation.IN_SYNC] = n - len(inputs.drifted)
    if actions != expected_actions:
        problems.append(f"actions {actions}, expected {expected_actions}")
    if situations != expected_situations:
        problems.append(f"situations {situations}, expected {expected_situations}")
    updates = plan[plan["action"] == PlannedAction.UPDATE]
    wrong = [
        user_id
        for user_id, changes in zip(updates["user_id"], updates["changes"], strict=True)
        if not changes or list(changes) != [inputs.drifted.get(user_id)]
    ]
    if wrong:
        problems.append(f"{len(wrong)} updates name the wrong attributes, e.g. {wrong[:3]}")
    if updates["attr_hash"].isna().any():
        problems.append("an update has no attr_hash to store on its link")
    if set(updates["origin"]) - {"app"}:
        problems.append("drift made in the app is not reported with origin 'app'")
    return problems


# -- measuring (in a child process per size) --------------------------------------------------


def measure(n: int, repeat: int) -> dict[str, Any]:
    """Generate, then time ``plan_changes`` ``repeat`` times and the bare join as often;
    then one more, untimed, plan under tracemalloc."""
    started = time.perf_counter()
    inputs = make_inputs(n)
    generate_s = time.perf_counter() - started
    generate_peak = _peak_bytes()
    _release_free_memory()
    inputs_rss = _rss_bytes()
    walls, cpus, peaks, problems = [], [], [], []
    for attempt in range(repeat):
        peak_reset = _reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        plan = plan_changes(inputs.desired, inputs.actual, inputs.links, rules())
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        peaks.append(_peak_bytes())
        if attempt == 0:
            problems = check_plan(plan, inputs)
        del plan
        _release_free_memory()
    joins = [_time(lambda: _bare_join(inputs)) for _ in range(repeat)]
    return {
        "size": n,
        "drifted": len(inputs.drifted),
        "generate_s": generate_s,
        "plan_s": walls,
        "plan_cpu_s": cpus,
        "join_s": joins,
        "inputs_rss": inputs_rss,
        "plan_peak": max(peaks),
        "generate_peak": generate_peak,
        "traced_peak": _traced_peak(inputs),
        "peak_reset": peak_reset,
        "problems": problems,
    }


def _traced_peak(inputs: Inputs) -> int:
    """The most memory the plan's own allocations held at once (tracemalloc: Python
    objects, numpy buffers, pandas hash tables), inputs excluded."""
    tracemalloc.start()
    plan = plan_changes(inputs.desired, inputs.actual, inputs.links, rules())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del plan
    _release_free_memory()
    return peak


def _release_free_memory() -> None:
    """Collect, then hand freed heap back to the OS (glibc), so that RSS counts live data
    and not the generator's (or a previous run's) freed temporaries."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _bare_join(inputs: Inputs) -> pd.DataFrame:
    pairs = inputs.desired.merge(inputs.links[["user_id", "remote_id"]], on="user_id")
    return pairs.merge(inputs.actual, on="remote_id", suffixes=("", "_app"))


def _time(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    gc.collect()
    return elapsed


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux ≥ 4.0), so getrusage then reports
    the plan's peak rather than the input generator's."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


# -- the command ------------------------------------------------------------------------------


def run_size(n: int, repeat: int) -> dict[str, Any]:
    """One size in a fresh interpreter, so its peak memory is its own."""
    command = [sys.executable, "-m", "bench.plan", "--child", str(n), "--repeat", str(repeat)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'users':>9} {'drifted':>8} {'plan s':>7} {'min s':>6} {'CPU s':>6} {'join s':>7}"
        f" {'plan/join':>9} {'inputs':>7} {'peak':>7} {'+plan':>7} {'traced':>7}"
        f" {'gen peak':>8}  check"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        plan_s, join_s = statistics.median(r["plan_s"]), statistics.median(r["join_s"])
        print(
            f"{r['size']:>9,} {r['drifted']:>8,} {plan_s:>7.2f} {min(r['plan_s']):>6.2f}"
            f" {statistics.median(r['plan_cpu_s']):>6.2f} {join_s:>7.2f}"
            f" {plan_s / join_s:>9.1f} {_gib(r['inputs_rss'])} {_gib(r['plan_peak'])}"
            f" {_gib(r['plan_peak'] - r['inputs_rss'])} {_gib(r['traced_peak'])}"
            f" {_gib(r['generate_peak'], 8)}  {'ok' if not r['problems'] else 'FAILED'}"
        )
    print("plan s / CPU s: median wall / CPU time of plan_changes; join s: the bare two-merge")
    print("join of the same inputs in the same process. Memory in GiB: inputs = RSS before")
    print("planning; peak = RSS high-water mark while planning; +plan = peak - inputs;")
    print("traced = tracemalloc peak of the plan's own allocations; gen peak = the input")
    print("generator's high-water mark (not part of the plan).")


def _gib(value: int, width: int = 7) -> str:
    return f"{value / 1024**3:>{width}.2f}"


def report_targets(results: list[dict[str, Any]]) -> None:
    for r in results:
        if r["size"] != TARGET_SIZE:
            continue
        plan_s = statistics.median(r["plan_s"])
        time_ok = plan_s < TARGET_SECONDS
        memory_ok = r["plan_peak"] < TARGET_BYTES
        print(
            f"target at {TARGET_SIZE:,}: plan {plan_s:.1f} s < {TARGET_SECONDS:.0f} s:"
            f" {'met' if time_ok else 'MISSED'}; peak RSS while planning"
            f" {r['plan_peak'] / 1024**3:.2f} GiB < 2 GiB: {'met' if memory_ok else 'MISSED'}"
        )
    for r in results:
        for problem in r["problems"]:
            print(f"CHECK FAILED at {r['size']:,}: {problem}")
        if not r["peak_reset"]:
            print(f"note: peak RSS could not be reset at {r['size']:,}; peaks include inputs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, TARGET_SIZE])
    parser.add_argument("--repeat", type=int, default=3, help="plan runs per size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.repeat)))
        return 0
    print(f"bench.plan; at start: {machine()}")
    results = [run_size(n, args.repeat) for n in args.sizes]
    print(f"at end: {machine()}")
    print_table(results)
    report_targets(results)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
