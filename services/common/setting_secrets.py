"""Keep secret settings out of logs and error messages.

A secret is a ``SecretStr`` field, or a URL or option string that carries a
password. :func:`mask_value` hides a secret's text, :func:`masked_settings`
gives settings as a dictionary fit for a log line, and :func:`secret_values`
lists the strings that the log handlers must hide wherever they appear.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings

__all__ = [
    "MASK",
    "has_unencoded_user_info",
    "mask_value",
    "masked_settings",
    "secret_values",
]

MASK = "**********"


def mask_value(value: str) -> str:
    """Keep a URL's scheme, host and path but hide its passwords; hide anything else.

    redis-py also reads a password from the query (``?password=...``, and
    ``?ssl_password=...`` for the client key), so those values are hidden as
    well.
    """
    if not value.strip():
        # Nothing to hide, and the user needs to see that the value is empty.
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        # urlsplit raises on an unclosed '[' (a broken IPv6 host), so the
        # password's place is unknown and the whole value is hidden.
        return MASK
    if not parts.scheme or "://" not in value:
        # Without '//' there is no user part, so where a password would be
        # ('user:secret' parses as a scheme and a path) is unknown.
        return MASK
    if has_unencoded_user_info(value):
        # urlsplit would take only the password's head as the password, so
        # everything up to the last '@' is hidden.
        return f"{parts.scheme}://{MASK}@{value.rsplit('@', 1)[1]}"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = "&".join(
        f"{name}={MASK}" if _is_password_option(name) else f"{name}{sep}{text}"
        for name, sep, text in (
            option.partition("=") for option in parts.query.split("&") if option
        )
    )
    if netloc == parts.netloc and query == parts.query:
        # Nothing hidden: shown as typed, since geturl() drops an empty '//'.
        return value
    return parts._replace(netloc=netloc, query=query).geturl()


def has_unencoded_user_info(url: str) -> bool:
    """Return whether an '@' follows the first '/', '?' or '#' after '://'.

    A user or password with one of those characters ends the URL's host
    part early, so the password's tail is parsed as the path, query or
    fragment. A query value with an '@' matches too, so callers use this
    only to explain or hide a URL, never to reject one.
    """
    if "://" not in url:
        return False
    rest = url.split("://", 1)[1]
    ends = [rest.find(character) for character in "/?#" if character in rest]
    return "@" in rest[min(ends, default=len(rest)) :]


def _query_passwords(value: str) -> list[str]:
    """Return the values of a URL's password query options, decoded."""
    return [
        text
        for name, text in parse_qsl(urlsplit(value).query, keep_blank_values=True)
        if _is_password_option(name) and text
    ]


def _is_password_option(name: str) -> bool:
    # ssl_password unlocks the client key of a rediss:// URL.
    return unquote(name).lower() in ("password", "ssl_password")


def masked_settings(settings: BaseSettings) -> dict[str, Any]:
    """Return the settings as a dict for logging, with every secret masked.

    A secret URL keeps its scheme, host, port and path, so the log still shows
    which server is used; its password becomes ``**********``. Other secrets
    are replaced whole.
    """
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    for path, secret in _secrets(settings):
        node = dumped
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = mask_value(secret)
    return dumped


def secret_values(settings: BaseSettings) -> list[str]:
    """Return the secret strings in ``settings`` (URL passwords included).

    Pass them to :func:`services.common.logging.configure_logging`, which masks
    them in every log line.
    """
    values = []
    for _, secret in _secrets(settings):
        try:
            passwords = [urlsplit(secret).password, *_query_passwords(secret)]
        except ValueError:
            # A URL that cannot be parsed is hidden whole, as mask_value does.
            values.append(secret)
            continue
        found = [password for password in passwords if password]
        if found:
            values.extend(found)
        elif "://" not in secret:
            # Not a URL: the whole value is the secret.
            values.append(secret)
    return [value for value in values if value]


def _secrets(
    model: BaseSettings | Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield (*path, name), value.get_secret_value()
        elif hasattr(type(value), "model_fields"):
            yield from _secrets(value, (*path, name))
