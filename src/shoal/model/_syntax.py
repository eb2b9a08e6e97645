"""Syntax rules for names, labels and annotations, as Kubernetes' apimachinery validation states them.

Each check returns a list of messages (empty when the value is valid), so callers can report every
problem at once with the field path they know.
"""

from __future__ import annotations

import ipaddress
import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024
PORT_NAME_MAX = 15

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def dns1123_label(value: str) -> list[str]:
    """A DNS label (RFC 1123): namespaces, container names, port names' owners."""
    errors: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errors.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
        )
    return errors


def dns1123_subdomain(value: str) -> list[str]:
    """A DNS subdomain (RFC 1123): most object names."""
    errors: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com')"
        )
    return errors


def dns1035_label(value: str) -> list[str]:
    """A DNS-1035 label: Service names (they become DNS names and environment variables)."""
    errors: list[str] = []
    if len(value) > DNS1035_LABEL_MAX:
        errors.append(f"must be no more than {DNS1035_LABEL_MAX} characters")
    if not _DNS1035_LABEL.fullmatch(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character "
            "(e.g. 'my-name', or 'abc-123')"
        )
    return errors


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name."""
    prefix, slash, name = value.rpartition("/")
    errors: list[str] = []
    if slash:
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend(f"prefix part {m}" for m in dns1123_subdomain(prefix))
    if not name:
        errors.append("name part must be non-empty")
        return errors
    if len(name) > QUALIFIED_NAME_MAX:
        errors.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if not _QUALIFIED_NAME.fullmatch(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')"
        )
    return errors


def label_value(value: str) -> list[str]:
    """A label value: empty, or up to 63 characters of the qualified-name alphabet."""
    errors: list[str] = []
    if len(value) > LABEL_VALUE_MAX:
        errors.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character"
        )
    return errors


def port_name(value: str) -> list[str]:
    """An IANA service name, as Kubernetes requires for named ports."""
    errors: list[str] = []
    if len(value) > PORT_NAME_MAX:
        errors.append(f"must be no more than {PORT_NAME_MAX} characters")
    if not _PORT_NAME.fullmatch(value):
        errors.append("must contain only lowercase alphanumeric characters or '-'")
    elif "--" in value:
        errors.append("must not contain consecutive hyphens")
    if not any(c.isalpha() for c in value):
        errors.append("must contain at least one letter (a-z)")
    return errors


def config_key(value: str) -> list[str]:
    """A key of a ConfigMap or Secret: it becomes a file name in a volume."""
    if not _CONFIG_KEY.fullmatch(value) or value in {".", ".."}:
        return ["a valid config key must consist of alphanumeric characters, '-', '_' or '.'"]
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return [f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"]
    return []


def env_var_name(value: str) -> list[str]:
    """An environment variable name as Kubernetes accepts it."""
    if not _ENV_VAR_NAME.fullmatch(value):
        return [
            "a valid environment variable name must consist of alphabetic characters, digits, "
            "'_', '-', or '.', and must not start with a digit"
        ]
    return []


def ip_address(value: str) -> list[str]:
    """An IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []
