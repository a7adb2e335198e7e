"""The LDAP connector: inetOrgPerson entries over ldap3 (RFC 4511)."""

from connectors.ldap.connector import LdapConnector
from connectors.ldap.entries import Deactivation
from connectors.ldap.wire import ConnectionFactory, OperationStats

__all__ = ["ConnectionFactory", "Deactivation", "LdapConnector", "OperationStats"]
