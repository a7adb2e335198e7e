"""The LDAP connector: inetOrgPerson entries over ldap3 (RFC 4511)."""

from connectors.ldap.connector import ConnectionFactory, LdapConnector, OperationStats
from connectors.ldap.entries import Deactivation

__all__ = ["ConnectionFactory", "Deactivation", "LdapConnector", "OperationStats"]
