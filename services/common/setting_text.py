"""Text settings checked the same way in every service: hosts and names.

A host to listen on is passed to the socket as it is written, so a typo
such as ``{}`` or a zero-width space would only fail when the server binds,
or resolve to an address that was not meant. The resolver reads ``0``,
``0x0`` and ``127.1`` as IPv4 addresses written in short, hexadecimal or
octal form, as inet_aton does, so ``0`` binds every interface on Linux.
:data:`ListenHost` therefore takes an IP address written plainly or an RFC
1123 host name, and rejects anything else with the reason.
:data:`NonBlankName` rejects a name that is empty or whitespace only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

__all__ = ["ListenHost", "MetricsHost", "NonBlankName", "listen_host_problem"]

# Host names as RFC 1123 allows them: labels of letters, digits and '-', not
# first or last, of at most 63 characters, and 253 characters in all, the
# longest name that DNS can carry.
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_HOST_CHARACTERS = re.compile(r"[A-Za-z0-9.-]")
# The characters of an IPv4 address in the forms that inet_aton reads, such
# as 0x7f.1 or 017700000001. inet_aton ignores whatever follows a space, so
# only text made of these characters is passed to it.
_NUMERIC_CHARACTERS = re.compile(r"[0-9A-Fa-fXx.]+")
_MAX_LABEL = 63
_MAX_NAME = 253


def listen_host_problem(host: str) -> str | None:
    """Return why ``host`` is not an IP address or a valid host name, or None."""
    if _is_ip_address(host):
        return None
    if host.startswith("[") and host.endswith("]") and _is_ip_address(host[1:-1]):
        return f"write the IPv6 address without brackets, as {host[1:-1]}"
    address = _numeric_ipv4(host.removesuffix("."))
    if address == "0.0.0.0":
        return (
            f"{host} is read as 0.0.0.0, which listens on every interface; write "
            "0.0.0.0 if every interface is meant, or 127.0.0.1 for this machine"
        )
    if address is not None:
        return (
            f"{host} is read as the IPv4 address {address}; write the address "
            f"plainly, as {address}"
        )
    return _host_name_problem(host)


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _numeric_ipv4(text: str) -> str | None:
    """Return the IPv4 address that inet_aton reads in ``text``, or None."""
    if _NUMERIC_CHARACTERS.fullmatch(text) is None:
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        return None


def _host_name_problem(name: str) -> str | None:
    """Return why ``name`` is not an RFC 1123 host name, or None.

    One dot at the end, as in a fully qualified name, is allowed.
    """
    if not name:
        return "the host is empty"
    name = name.removesuffix(".")
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
        # No top-level domain is all digits, so this is an IPv4 address with
        # a part out of range, such as 256.1 or 10.0.0.300.
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
"""A host to listen on: an IP address written plainly or an RFC 1123 host name."""

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
