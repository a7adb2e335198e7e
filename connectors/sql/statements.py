"""The SQL the sql connector sends, in one place.

Queries take their values as bound parameters. Role names in DDL cannot be parameters
(PostgreSQL binds values, not identifiers, and not in utility statements), so every
statement that names a role is composed with ``psycopg.sql``: ``Identifier`` quotes a
name (``x"; DROP ROLE y; --`` becomes one identifier, ``"x""; DROP ROLE y; --"``) and
``Literal`` quotes a value. No statement is ever built by string formatting.
"""

from __future__ import annotations

from psycopg import sql

#: The roles Roster manages: direct members of the managed role whose name starts with
#: the prefix. ``pg_auth_members`` may hold one row per grantor (PostgreSQL 16), so
#: membership is an EXISTS, never a join that could list a role twice.
_MANAGED = """
SELECT r.oid, r.rolname::text AS rolname, r.rolcanlogin,
       shobj_description(r.oid, 'pg_authid') AS comment,
       ARRAY(SELECT DISTINCT g.rolname::text
             FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid AND g.rolname = ANY(%(groups)s::text[])
             ORDER BY 1) AS member_of
FROM pg_roles r
WHERE EXISTS (SELECT 1
              FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
              WHERE m.member = r.oid AND g.rolname = %(managed)s)
  AND starts_with(r.rolname, %(prefix)s)
"""

#: Keyset pagination on the oid: stable while roles are renamed, created or dropped
#: between pages (OFFSET would skip or repeat roles; a rename would move a role
#: across a name-ordered key).
LIST_PAGE = _MANAGED + "  AND r.oid > %(after)s::oid ORDER BY r.oid LIMIT %(limit)s"
BY_OID = _MANAGED + "  AND r.oid = %(oid)s::oid"
BY_NAME = _MANAGED + "  AND r.rolname = %(name)s"
#: two rows are enough to tell "one" from "several"
BY_COMMENT = _MANAGED + "  AND shobj_description(r.oid, 'pg_authid') = %(comment)s LIMIT 2"

EXISTING_ROLES = "SELECT rolname::text AS rolname FROM pg_roles WHERE rolname = ANY(%(names)s)"

#: pg_terminate_backend signals; the sessions end a moment later
END_SESSIONS = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS ended
FROM pg_stat_activity
WHERE usesysid = %(oid)s::oid AND pid <> pg_backend_pid()
"""

READ_ONLY = "SET TRANSACTION READ ONLY"


def create_role(name: str, *, login: bool) -> sql.Composed:
    return sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(name), _login(login))


def set_login(name: str, *, login: bool) -> sql.Composed:
    return sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(name), _login(login))


def rename_role(old: str, new: str) -> sql.Composed:
    return sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))


def comment_on_role(name: str, comment: str | None) -> sql.Composed:
    """An empty comment, like NULL, removes it (PostgreSQL's COMMENT)."""
    text = sql.Literal(comment) if comment else sql.SQL("NULL")
    return sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), text)


def grant_role(group: str, member: str) -> sql.Composed:
    return sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member))


def revoke_role(group: str, member: str) -> sql.Composed:
    return sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(member))


def reassign_owned(name: str, to: str) -> sql.Composed:
    return sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(name), sql.Identifier(to))


def drop_owned(name: str) -> sql.Composed:
    return sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name))


def drop_role(name: str) -> sql.Composed:
    return sql.SQL("DROP ROLE {}").format(sql.Identifier(name))


def _login(login: bool) -> sql.SQL:
    return sql.SQL("LOGIN") if login else sql.SQL("NOLOGIN")
