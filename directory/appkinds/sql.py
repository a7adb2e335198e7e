"""A PostgreSQL database whose login roles are the app's accounts.

Which roles are Roster's is decided by two settings together, never guessed:

* ``managed_role``: a NOLOGIN group role (created on the first write if missing) that every
  account Roster manages is a direct member of. Roster lists, finds, changes and drops
  only members of it, so ``postgres``, system roles and a DBA's own roles are out of reach;
* ``name_prefix``: prepended to ``userName`` to form the role name and stripped when
  reading, so two apps (or two test runs) on one cluster never share a name space.

Role names are case-sensitive in PostgreSQL, so ``userName`` is compared exactly.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from directory.appbase import AppConfig, Constant, Source

#: the attributes a role has in Roster's flat namespace
USER_NAME = "userName"
ACTIVE = "active"
COMMENT = "comment"
MEMBER_OF = "memberOf"
SQL_ATTRIBUTES = (USER_NAME, ACTIVE, COMMENT, MEMBER_OF)
#: attributes a connector can search by (``find_account``), so ``match_on`` is limited to them
SQL_MATCHABLE = (USER_NAME, COMMENT)
#: NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers, so they are refused
MAX_ROLE_NAME_BYTES = 63
#: memberOf holds several role names in one text value
MEMBER_SEPARATOR = ","

SQL_DEFAULT_MAPPING: dict[str, str] = {
    USER_NAME: "user_name",
    ACTIVE: "active",
    COMMENT: "display_name",
}


def check_role_name(name: str, *, prefix: str = "") -> str | None:
    """Why ``prefix + name`` cannot be a role name Roster writes, or None."""
    full = prefix + name
    if not name:
        return "is empty"
    if "\x00" in full:
        return "contains a NUL character"
    if len(full.encode()) > MAX_ROLE_NAME_BYTES:
        return f"is longer than {MAX_ROLE_NAME_BYTES} bytes (PostgreSQL would truncate it)"
    if full.startswith("pg_"):
        return "starts with pg_ (reserved for system roles)"
    return None


def split_members(value: str | None) -> list[str]:
    """A memberOf value ("a,b") as a sorted list of distinct role names."""
    if not value:
        return []
    return sorted({part.strip() for part in value.split(MEMBER_SEPARATOR) if part.strip()})


class SqlAppConfig(AppConfig):
    default_mapping: ClassVar[dict[str, str]] = SQL_DEFAULT_MAPPING
    default_match_on: ClassVar[tuple[str, ...]] = (USER_NAME,)
    #: trust and peer authentication need no password
    secret_required: ClassVar[bool] = False
    #: role names are identifiers: "Alice" and "alice" are two roles
    case_insensitive: ClassVar[frozenset[str]] = frozenset()

    connector: Literal["sql"]
    #: ``postgresql://user@host:port/db``, without a password: the password is the app's
    #: secret (``token_env`` or ``token_secret``)
    database_url: str
    #: the NOLOGIN group role marking the accounts Roster manages
    managed_role: str = "roster_managed"
    #: prepended to userName to form the role name
    name_prefix: str = ""
    #: the group roles Roster may grant; unless ``mapping`` says otherwise, every account
    #: is a member of all of them (``memberOf``)
    group_roles: list[str] = Field(default_factory=list)
    #: on delete: REASSIGN OWNED BY the account TO this role, then DROP OWNED; without
    #: it, a role that owns objects or holds privileges is not dropped (nothing is lost)
    reassign_owned_to: str | None = None
    #: on deactivate and delete: end the account's open sessions (NOLOGIN only stops new ones)
    terminate_sessions: bool = True

    @field_validator("database_url")
    @classmethod
    def _postgres_without_password(cls, url: str) -> str:
        """Only PostgreSQL over psycopg 3; the message never repeats the URL."""
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (e.g. postgresql://roster@db:5432/app)") from None
        if parsed.get_backend_name() != "postgresql":
            raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use PostgreSQL")
        if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
            raise ValueError(f"unsupported driver {parsed.get_driver_name()!r}: use psycopg")
        if parsed.password is not None:
            raise ValueError(
                "must not contain a password: put it in the environment variable that"
                " token_env names (or the Secret block token_secret names)"
            )
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)

    @field_validator("managed_role", "reassign_owned_to")
    @classmethod
    def _role_name(cls, name: str | None) -> str | None:
        problem = None if name is None else check_role_name(name)
        if problem:
            raise ValueError(f"role name {problem}")
        return name

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        problem = check_role_name(prefix + "x") if prefix else None
        if problem:
            raise ValueError(f"role names would be unusable: prefix + userName {problem}")
        return prefix

    @field_validator("group_roles")
    @classmethod
    def _group_role_names(cls, names: list[str]) -> list[str]:
        for name in names:
            problem = check_role_name(name) or (
                f"contains {MEMBER_SEPARATOR!r}" if MEMBER_SEPARATOR in name else None
            )
            if problem:
                raise ValueError(f"group role {name!r} {problem}")
        if len(set(names)) != len(names):
            raise ValueError("lists a role twice")
        return sorted(names)

    @model_validator(mode="after")
    def _sql_attributes(self) -> SqlAppConfig:
        mapping = self.effective_mapping
        unknown = [target for target in mapping if target not in SQL_ATTRIBUTES]
        if unknown:
            raise ValueError(
                f"mapping: unknown attribute(s) {', '.join(map(repr, unknown))} for a sql app;"
                f" known: {', '.join(SQL_ATTRIBUTES)}"
            )
        if USER_NAME not in mapping:
            raise ValueError("mapping: userName is the role name and cannot be dropped")
        if MEMBER_OF in mapping and not self.group_roles:
            raise ValueError("mapping: memberOf needs group_roles, the roles Roster may grant")
        unmatchable = [path for path in self.match_on if path not in SQL_MATCHABLE]
        if unmatchable:
            raise ValueError(
                f"match_on: a sql app matches on {' or '.join(SQL_MATCHABLE)},"
                f" not {', '.join(unmatchable)}"
            )
        if self.managed_role in self.group_roles:
            raise ValueError("group_roles must not list managed_role")
        return self

    @property
    def effective_mapping(self) -> dict[str, Source]:
        """The default mapping, plus ``memberOf`` = every group role unless mapped."""
        merged = super().effective_mapping
        if self.group_roles and MEMBER_OF not in self.mapping:
            merged[MEMBER_OF] = Constant(constant=MEMBER_SEPARATOR.join(self.group_roles))
        return merged

    @property
    def url(self) -> URL:
        """The database URL, without a password."""
        return make_url(self.database_url)
