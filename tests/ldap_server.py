"""A real OpenLDAP ``slapd`` on 127.0.0.1, started once per test session with a throwaway
configuration (tests/conftest.py's ``slapd`` fixture), for the LDAP connector's tests.

The configuration is a ``slapd.conf`` written into a temporary directory: an mdb database
under ``dc=example,dc=org``, the core/cosine/inetOrgPerson/nis schemas, the password
policy overlay (so a locked account really cannot bind), a size limit of ``SIZE_LIMIT``
entries (so a listing must use the paged-results control, RFC 2696) and two listeners,
``ldap://`` and ``ldaps://`` with a self-signed certificate.

Roster binds as a service account (``SERVICE_DN``), never as the rootdn: the rootdn is
exempt from limits, a service account is not. Tests seed and read the directory as the
rootdn (``ADMIN_DN``), with their own ldap3 connection, never through the connector.
Each test works in its own ``ou=`` under the suffix (``Slapd.fresh_tree``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap3
import pytest

from tests.socket_server import self_signed_certificate

SLAPD = "/usr/sbin/slapd"
SLAPPASSWD = "/usr/sbin/slappasswd"
REQUIRE_ENV = "ROSTER_REQUIRE_LDAP"
SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret-6f1e"
SERVICE_DN = f"cn=roster,{SUFFIX}"
SERVICE_PASSWORD = "roster-bind-7c2a9d"
POLICY_DN = f"cn=default,ou=policies,{SUFFIX}"
#: entries a plain (unpaged) search may return to the service account
SIZE_LIMIT = 5
#: the ppolicy value for "locked by an administrator, until unlocked" (slapo-ppolicy(5))
LOCKED = "000001010000Z"

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload back_monitor
moduleload ppolicy
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 104857600
suffix "{suffix}"
rootdn "{admin_dn}"
rootpw {admin_hash}
directory {root}/data
index objectClass,entryUUID eq
index uid,mail,cn eq
# size.prtotal: a paged search may return everything, one page at a time (RFC 2696)
limits dn.exact="{service_dn}" size.soft={size} size.hard={size} {paged_total}
overlay ppolicy
ppolicy_default "{policy_dn}"
access to attrs=userPassword
  by dn.exact="{service_dn}" write
  by anonymous auth
  by * none
access to *
  by dn.exact="{service_dn}" write
  by users read
  by * none

# operation counters (cn=Monitor), so tests can count the writes a sync made
database monitor
access to *
  by dn.exact="{admin_dn}" read
  by * none
"""


@dataclass(frozen=True)
class Tree:
    """One test's part of the directory: people, groups and a disabled OU."""

    base: str

    @property
    def people(self) -> str:
        return f"ou=people,{self.base}"

    @property
    def groups(self) -> str:
        return f"ou=groups,{self.base}"

    @property
    def disabled(self) -> str:
        return f"ou=disabled,{self.base}"


class Slapd:
    """A running slapd; ``admin()`` is a rootdn connection for seeding and reading back."""

    def __init__(self, root: Path, *, paged_total: str = "size.prtotal=unlimited") -> None:
        """``paged_total``: the service account's limit on paged searches; empty for
        slapd's default (the hard size limit, as for any search)."""
        self.root = root
        self.port = _free_port()
        self.tls_port = _free_port()
        self.cert, key = self_signed_certificate(root)
        (root / "data").mkdir()
        conf = root / "slapd.conf"
        conf.write_text(
            SLAPD_CONF.format(
                root=root,
                cert=self.cert,
                key=key,
                suffix=SUFFIX,
                admin_dn=ADMIN_DN,
                admin_hash=_hash(ADMIN_PASSWORD),
                service_dn=SERVICE_DN,
                policy_dn=POLICY_DN,
                size=SIZE_LIMIT,
                paged_total=paged_total,
            ),
            encoding="utf-8",
        )
        self.conf = conf
        self.log = root / "slapd.log"
        self.start()
        try:
            self._seed_base()
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        """Run slapd (again, after ``stop``: same port, same data)."""
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SLAPD, "-h", urls, "-f", str(self.conf), "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def admin(self) -> ldap3.Connection:
        return ldap3.Connection(
            ldap3.Server(self.url, get_info=ldap3.NONE),
            ADMIN_DN,
            ADMIN_PASSWORD,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
            raise_exceptions=True,
        )

    def fresh_tree(self) -> Tree:
        """A new, empty ``ou=`` with people, groups and disabled OUs under it."""
        tree = Tree(f"ou=t{uuid.uuid4().hex[:12]},{SUFFIX}")
        with self.admin() as admin:
            for dn in (tree.base, tree.people, tree.groups, tree.disabled):
                admin.add(dn, ["organizationalUnit"])
        return tree

    def writes(self) -> int:
        """Add, modify, modify DN and delete operations the server completed so far."""
        with self.admin() as admin:
            admin.search(
                "cn=Operations,cn=Monitor",
                "(|(cn=Add)(cn=Modify)(cn=Modrdn)(cn=Delete))",
                attributes=["monitorOpCompleted"],
            )
            return sum(int(e.monitorOpCompleted.value) for e in admin.entries)

    def can_bind(self, dn: str, password: str) -> bool:
        connection = ldap3.Connection(ldap3.Server(self.url, get_info=ldap3.NONE), dn, password)
        try:
            return bool(connection.bind())
        finally:
            connection.unbind()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _wait_until_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"slapd exited with {self.process.returncode}:\n"
                    + self.log.read_text(errors="replace")[-3000:]
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"slapd did not answer on port {self.port} in {timeout:.0f}s")

    def _seed_base(self) -> None:
        with self.admin() as admin:
            admin.add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
            admin.add(
                SERVICE_DN,
                ["applicationProcess", "simpleSecurityObject"],
                {"userPassword": _hash(SERVICE_PASSWORD)},
            )
            admin.add(f"ou=policies,{SUFFIX}", ["organizationalUnit"])
            # pwdLockout: without it, slapd ignores pwdAccountLockedTime (slapo-ppolicy(5))
            admin.add(
                POLICY_DN,
                ["organizationalRole", "pwdPolicy"],
                {"pwdAttribute": "userPassword", "pwdLockout": "TRUE"},
            )


def _hash(password: str) -> str:
    return subprocess.run(
        [SLAPPASSWD, "-h", "{SSHA}", "-s", password],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def slapd_or_skip() -> None:
    """Skip when slapd is not installed, or fail when ``ROSTER_REQUIRE_LDAP`` is set
    (.ci/run sets it and installs the package)."""
    if os.access(SLAPD, os.X_OK) and shutil.which(SLAPPASSWD):
        return
    message = (
        f"the LDAP tests need OpenLDAP's {SLAPD} and {SLAPPASSWD}: "
        "apt-get install slapd (.ci/run installs it)"
    )
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {message}")
    pytest.skip(message)


@contextlib.contextmanager
def running_slapd(root: Path, **settings: str) -> Iterator[Slapd]:
    slapd_or_skip()
    server = Slapd(root, **settings)
    try:
        yield server
    finally:
        server.stop()
