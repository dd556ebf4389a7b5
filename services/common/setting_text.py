"""Text settings checked the same way in every service: hosts and names.

A host to listen on is passed to the socket as it is written, so a typo
such as ``{}`` or a zero-width space would only fail when the server binds,
or resolve to an address that was not meant. ``0`` binds every interface on
Linux, because the resolver reads it as the IPv4 address 0.0.0.0.
:data:`ListenHost` therefore takes an IP address or an RFC 1123 host name
and rejects anything else with the reason. :data:`NonBlankName` rejects a
name that is empty or whitespace only.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = ["ListenHost", "MetricsHost", "NonBlankName", "listen_host_problem"]

# Host names as RFC 1123 allows them: labels of letters, digits and '-', not
# first or last, of at most 63 characters, and 253 characters in all, the
# longest name that DNS can carry.
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_HOST_CHARACTERS = re.compile(r"[A-Za-z0-9.-]")
_MAX_LABEL = 63
_MAX_NAME = 253


def listen_host_problem(host: str) -> str | None:
    """Return why ``host`` is not an IP address or a valid host name, or None."""
    if host == "0":
        return (
            "0 is read as 0.0.0.0, which listens on every interface; write "
            "0.0.0.0 if every interface is meant, or 127.0.0.1 for this machine"
        )
    if _is_ip_address(host):
        return None
    if host.startswith("[") and host.endswith("]") and _is_ip_address(host[1:-1]):
        return f"write the IPv6 address without brackets, as {host[1:-1]}"
    return _host_name_problem(host)


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_name_problem(name: str) -> str | None:
    """Return why ``name`` is not an RFC 1123 host name, or None."""
    if not name:
        return "the host is empty"
    if len(name) > _MAX_NAME:
        return f"the host name has {len(name)} characters, more than {_MAX_NAME}"
    for character in name:
        if not _HOST_CHARACTERS.fullmatch(character):
            return (
                f"the character {character!r} is not allowed in a host name, "
                "which takes letters, digits, '-' and '.'"
            )
    labels = name.split(".")
    for label in labels:
        if not label:
            return "the host name has an empty label between dots or at an end"
        if len(label) > _MAX_LABEL:
            return (
                f"the label {label[:20]!r}... has {len(label)} characters, more "
                f"than {_MAX_LABEL}"
            )
        if not _LABEL.fullmatch(label):
            return f"the label {label!r} starts or ends with '-'"
    if labels[-1].isdigit():
        # The resolver reads a short IPv4 address such as 127.1 as 127.0.0.1.
        return (
            "the last label is all digits, which no host name has; write an IPv4 "
            "address in full, such as 127.0.0.1"
        )
    return None


def _check_listen_host(host: str) -> str:
    problem = listen_host_problem(host)
    if problem is not None:
        raise ValueError(problem)
    return host


ListenHost = Annotated[str, AfterValidator(_check_listen_host)]
"""A host to listen on: an IP address or an RFC 1123 host name, not ``0``."""

MetricsHost = Annotated[
    ListenHost,
    Field(
        description="an IP address or host name (RFC 1123: dot-separated labels "
        "of letters, digits and '-', at most 253 characters) that /metrics "
        "listens on"
    ),
]
"""The host that a service's /metrics server listens on."""


def _reject_blank_name(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("the name is blank")
    return value


NonBlankName = Annotated[str, BeforeValidator(_reject_blank_name)]
"""A name setting that rejects an empty or whitespace-only value."""
