"""The directory's exceptions, in one tree so callers can catch exactly what they handle::

    DirectoryError                 anything the directory refuses, with a message for people
    ├── UserNotFoundError          no user matches a user_name, email or id
    ├── GroupNotFoundError         no group has that name
    ├── GroupCycleError            a nesting that would put a group inside itself
    ├── AmbiguousUserError         an email shared by several users was used as a key
    ├── RunNotFoundError           no run has that id
    ├── InvalidNameError           an app or group name Roster cannot use
    ├── CsvImportError             a CSV file has bad rows; carries every RowError
    ├── SafetyHoldError            a full import would deactivate too many users
    └── AppLockedError             another run holds the app's lock

``store.py`` re-exports them, so ``from directory.store import UserNotFoundError`` works.
"""

from __future__ import annotations

from dataclasses import dataclass

#: how much of a bad value a message repeats
SHOWN = 60


def shown(value: str) -> str:
    """``value`` quoted for a message, shortened: a 100,000-character cell is one bad
    value, not a screenful."""
    return repr(value) if len(value) <= SHOWN else f"{value[: SHOWN - 1]!r}…"


class DirectoryError(Exception):
    """The directory refused an operation; the message says why, for a person to read."""


class UserNotFoundError(DirectoryError):
    pass


class GroupNotFoundError(DirectoryError):
    pass


class GroupCycleError(DirectoryError):
    """Putting a group inside another would make it contain itself; ``cycle`` names the
    loop it would close, outer group first: ``("a", "b", "a")``."""

    def __init__(self, child: str, parent: str, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        loop = " > ".join(cycle)
        if child.lower() == parent.lower():
            reason = "a group cannot be inside itself"
        else:
            reason = f"{parent!r} is already inside {child!r}"
        super().__init__(
            f"cannot put group {child!r} inside {parent!r}: {reason} (the cycle {loop})"
        )


class AmbiguousUserError(DirectoryError):
    pass


class RunNotFoundError(DirectoryError):
    pass


class InvalidNameError(DirectoryError):
    pass


@dataclass(frozen=True)
class RowError:
    """One problem in a CSV file, at a 1-based file line (the header is line 1)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class CsvImportError(DirectoryError):
    """A CSV file was rejected as a whole: nothing was written. ``errors`` lists every
    problem found, so one round of fixes is enough."""

    def __init__(self, source: str, errors: list[RowError]) -> None:
        self.source = source
        self.errors = errors
        if len(errors) == 1:
            message = f"{source}: {errors[0]}; nothing imported"
        else:
            message = f"{source}: {len(errors)} problems, nothing imported"
        super().__init__(message)


class SafetyHoldError(DirectoryError):
    """A full import would deactivate more users than the safety settings allow."""

    def __init__(self, count: int, active: int) -> None:
        self.count = count
        self.active = active
        super().__init__(
            f"refusing to deactivate {count} of {active} active users "
            "(over the safety limit); check the file, or pass --force"
        )


class AppLockedError(DirectoryError):
    """Another run is writing to the app (``directory.locks``); the message names it."""
