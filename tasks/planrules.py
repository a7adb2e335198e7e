"""The plan's vocabulary: the situations an account can be in, the actions planned for
it, the plan's columns, and ``PlanRules``, the per-app settings planning reads (built
literally in tests, ``PlanRules.for_app`` in a sync). ``tasks.plan`` says how they are
decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from directory.config import (
    REFERENCE_FIELDS,
    WORK_EMAIL,
    Action,
    AppConfig,
    DeprovisionMode,
    MissingPolicy,
    source_field,
)
from directory.scoping import Remediation


class Situation(StrEnum):
    MISSING = "missing"
    MATCHED = "matched"
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    GONE = "gone"
    DEPROVISION = "deprovision"
    DEPROVISIONED = "deprovisioned"
    ORPHAN = "orphan"
    UNMANAGED = "unmanaged"
    DISPUTED = "disputed"


class PlannedAction(StrEnum):
    CREATE = "create"
    LINK = "link"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    DELETE = "delete"
    UNLINK = "unlink"
    NONE = "none"
    REPORT = "report"


#: Actions that take access away; the guard counts and may hold them.
DESTRUCTIVE = frozenset({PlannedAction.DEACTIVATE, PlannedAction.DELETE})


#: Actions that send a request to the app.
WRITES = frozenset(
    {
        PlannedAction.CREATE,
        PlannedAction.LINK,
        PlannedAction.UPDATE,
        PlannedAction.DEACTIVATE,
        PlannedAction.DELETE,
    }
)


GATES = {
    PlannedAction.CREATE: Action.CREATE,
    PlannedAction.UPDATE: Action.UPDATE,
    PlannedAction.DEACTIVATE: Action.DEACTIVATE,
    PlannedAction.DELETE: Action.DELETE,
}


PLAN_COLUMNS = [
    "user_id",
    "user_name",
    "remote_id",
    "situation",
    "action",
    "match_attr",
    "origin",
    "changes",
    "reported",
    "note",
    "held",
]


@dataclass(frozen=True)
class PlanRules:
    """The per-app settings the plan needs, nothing else (so tests build them literally)."""

    targets: tuple[str, ...]
    match_on: tuple[str, ...] = ("userName", WORK_EMAIL)
    references: frozenset[str] = frozenset()
    #: compared case-insensitively (RFC 7643 §4.1.1: userName is caseExact=false)
    case_insensitive: frozenset[str] = frozenset({"userName", WORK_EMAIL})
    #: the sign-in name of an app account, for rows with no directory user
    login_attribute: str = "userName"
    #: targets written from the directory's user id (``externalId`` by default). RFC 7643
    #: §3.1 makes externalId the provisioning client's own identifier, so an unlinked
    #: account holding a user's id there is one Roster created and never got to link (its
    #: answer was lost, or the run was killed): it is deprovisioned, not left "unmanaged".
    owner_keys: frozenset[str] = frozenset()
    deprovision: DeprovisionMode = DeprovisionMode.DEACTIVATE
    on_missing: MissingPolicy = MissingPolicy.RECREATE
    actions: frozenset[Action] = field(
        default_factory=lambda: frozenset({Action.CREATE, Action.UPDATE, Action.DEACTIVATE})
    )
    #: written on create only: never compared, so never drift and never updated
    create_only: frozenset[str] = frozenset()
    #: remediation ``report``: compared and shown, never written
    reported: frozenset[str] = frozenset()
    #: remediation ``ignore``: written on create, then neither compared nor written
    ignored: frozenset[str] = frozenset()
    #: an account re-enabled by hand while out of scope: deactivated again, or only reported
    status: Remediation = Remediation.ENFORCE

    @property
    def compared(self) -> tuple[str, ...]:
        """The targets compared after creation (and hashed on the link): the reported ones
        too, so a reported difference stays one (the hash never flips with the app)."""
        skipped = self.create_only | self.ignored
        if not skipped:
            return self.targets
        return tuple(t for t in self.targets if t not in skipped)

    @property
    def enforced(self) -> tuple[str, ...]:
        """The compared targets whose differences are written."""
        return tuple(t for t in self.compared if t not in self.reported)

    @classmethod
    def for_app(cls, app: AppConfig) -> PlanRules:
        mapping = app.effective_mapping
        fields = {target: source_field(source) for target, source in mapping.items()}
        refs = {t for t, f in fields.items() if f in REFERENCE_FIELDS}
        return cls(
            targets=tuple(mapping),
            match_on=tuple(app.match_on),
            references=frozenset(refs),
            case_insensitive=app.case_insensitive & set(mapping),
            login_attribute=app.login_attribute,
            owner_keys=frozenset(t for t, f in fields.items() if f == "user_id"),
            deprovision=app.deprovision,
            on_missing=app.on_missing,
            actions=frozenset(app.actions),
            create_only=app.create_only,
            reported=_with_policy(app, Remediation.REPORT),
            ignored=_with_policy(app, Remediation.IGNORE),
            status=app.remediation.status,
        )


def _with_policy(app: AppConfig, policy: Remediation) -> frozenset[str]:
    return frozenset(t for t in app.effective_mapping if app.remediation.for_target(t) is policy)
