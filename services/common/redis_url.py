"""Checks of a Redis URL's database and query options, before any connection.

redis-py reads the query options only when a client is built, and checks
few of them even then. With ``health_check_interval=-5`` every connection
fails with an error from the server, and with ``socket_connect_timeout=0``
none ever connects. An unknown option name reaches the connection class as
a keyword, which raises a TypeError, and the path ``/ 1`` is read as
database 1. :func:`redis_url_problem` checks the path and each option
against what the services' clients accept, so such a URL stops the process
at start with the option, its value and the expected form.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple, cast
from urllib.parse import unquote, unquote_plus, urlsplit

from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

__all__ = ["redis_url_problem"]

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
# Redis refuses a client name with a space or a character outside printable
# ASCII, and redis-py sends the library name and version the same way.
_CLIENT_TEXT = re.compile(r"[!-~]+")
# socket.settimeout raises OverflowError from about 1e10 seconds, and a day
# is far longer than any Redis command of the services takes.
_MAX_SECONDS = 86_400.0
_BOOLEAN_WORDS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})
# Redis 7 reads the number given to SELECT as a signed 32-bit integer and
# replies 'value is out of range' above it, so no server has a higher database.
_MAX_DATABASE = 2**31 - 1


class _Option(NamedTuple):
    """The accepted values of one query option.

    ``form`` describes them after "must be", ``is_valid`` tests the decoded
    text, and ``is_tls_only`` marks the options that only a rediss:// URL
    takes.
    """

    form: str
    is_valid: Callable[[str], bool]
    is_tls_only: bool = False


def _is_seconds(text: str) -> bool:
    return _DECIMAL.fullmatch(text) is not None and 0 < float(text) <= _MAX_SECONDS


def _whole(low: int, high: int | None = None) -> Callable[[str], bool]:
    def is_valid(text: str) -> bool:
        if _DIGITS.fullmatch(text) is None:
            return False
        if high is not None and len(text.lstrip("0")) > len(str(high)):
            # int() rejects text of more than 4300 digits, so this comes first.
            return False
        return low <= int(text) and (high is None or int(text) <= high)

    return is_valid


def _is_boolean(text: str) -> bool:
    # redis-py reads every word but 0, f, false, n, no and off as true, so
    # 'flase' would turn the option on.
    return text.lower() in _BOOLEAN_WORDS


def _parses(name: str) -> Callable[[str], bool]:
    """Return a check that redis-py's own parser of option ``name`` accepts."""
    parser = cast(Callable[[str], object], URL_QUERY_ARGUMENT_PARSERS[name])

    def is_valid(text: str) -> bool:
        try:
            parser(text)
        except ValueError:
            return False
        return True

    return is_valid


def _is_readable_file(text: str) -> bool:
    return Path(text).is_file() and os.access(text, os.R_OK)


def _is_cipher_list(text: str) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).set_ciphers(text)
    except ssl.SSLError:
        return False
    return True


def _is_client_text(text: str) -> bool:
    return _CLIENT_TEXT.fullmatch(text) is not None


def _is_text(text: str) -> bool:
    return bool(text.strip())


_BOOLEAN = "true or false (also 1/0, yes/no or on/off)"
_SECONDS = f"a number of seconds above 0 and at most {_MAX_SECONDS:.0f}"

_OPTIONS: dict[str, _Option] = {
    "db": _Option(
        f"a database number in plain digits from 0 to {_MAX_DATABASE}, such as 0",
        _whole(0, _MAX_DATABASE),
    ),
    "protocol": _Option("2 or 3", lambda text: text in ("2", "3")),
    "username": _Option("a user name", _is_text),
    "password": _Option("a password", _is_text),
    "socket_timeout": _Option(_SECONDS, _is_seconds),
    "socket_connect_timeout": _Option(_SECONDS, _is_seconds),
    "socket_keepalive": _Option(_BOOLEAN, _is_boolean),
    "socket_read_size": _Option(
        "a number of bytes from 1 to 16777216", _whole(1, 16_777_216)
    ),
    "retry_on_timeout": _Option(_BOOLEAN, _is_boolean),
    "retry_on_error": _Option(
        "a comma-separated list of redis-py exception names, such as "
        "ConnectionError,TimeoutError",
        _parses("retry_on_error"),
    ),
    "max_connections": _Option("a whole number of at least 1", _whole(1)),
    "health_check_interval": _Option(
        "a whole number of seconds, 0 for no health check", _whole(0)
    ),
    "client_name": _Option("printable ASCII text without spaces", _is_client_text),
    "lib_name": _Option("printable ASCII text without spaces", _is_client_text),
    "lib_version": _Option("printable ASCII text without spaces", _is_client_text),
    "legacy_responses": _Option(_BOOLEAN, _is_boolean),
    "ssl_cert_reqs": _Option(
        "none, optional or required",
        lambda text: text in ("none", "optional", "required"),
        is_tls_only=True,
    ),
    "ssl_check_hostname": _Option(_BOOLEAN, _is_boolean, is_tls_only=True),
    "ssl_ca_certs": _Option(
        "a path to a readable CA file", _is_readable_file, is_tls_only=True
    ),
    "ssl_ca_path": _Option(
        "a path to a folder of CA files",
        lambda text: Path(text).is_dir(),
        is_tls_only=True,
    ),
    "ssl_ca_data": _Option("PEM text", _is_text, is_tls_only=True),
    "ssl_certfile": _Option(
        "a path to a readable certificate file", _is_readable_file, is_tls_only=True
    ),
    "ssl_keyfile": _Option(
        "a path to a readable private key file", _is_readable_file, is_tls_only=True
    ),
    "ssl_password": _Option("a password", _is_text, is_tls_only=True),
    "ssl_ciphers": _Option("an OpenSSL cipher list", _is_cipher_list, is_tls_only=True),
    "ssl_min_version": _Option(
        "771 for TLS 1.2 or 772 for TLS 1.3",
        lambda text: text in ("771", "772"),
        is_tls_only=True,
    ),
    "ssl_include_verify_flags": _Option(
        "a comma-separated list of ssl.VerifyFlags names",
        _parses("ssl_include_verify_flags"),
        is_tls_only=True,
    ),
    "ssl_exclude_verify_flags": _Option(
        "a comma-separated list of ssl.VerifyFlags names",
        _parses("ssl_exclude_verify_flags"),
        is_tls_only=True,
    ),
    "ssl_validate_ocsp": _Option(_BOOLEAN, _is_boolean, is_tls_only=True),
    "ssl_validate_ocsp_stapled": _Option(_BOOLEAN, _is_boolean, is_tls_only=True),
}

# Options that redis-py accepts but that would break the services' clients.
_UNSUPPORTED = {
    "timeout": "redis-py reads it only in a blocking connection pool, which the "
    "services do not use; use socket_timeout",
    "decode_responses": "the services read Redis replies as bytes",
    "encoding": "the services read Redis replies as bytes",
    "encoding_errors": "the services read Redis replies as bytes",
}

# The values of these options are secrets, so no message shows them.
_SECRET_OPTIONS = frozenset({"password", "ssl_password"})


def redis_url_problem(url: str) -> str | None:
    """Return why the services' Redis clients could not use ``url``, or None.

    The path must be empty or a database number, and each query option one
    that the connection class of the URL's scheme accepts, given once, with
    a value of its expected form.

    Args:
        url: a redis:// or rediss:// URL whose host part is valid.

    Returns:
        The problem in words, naming the path or the option and its value,
        or None when the URL is usable.
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    if path not in ("", "/") and not re.fullmatch("/[0-9]+", path):
        return f"the path {path!r} is not a database number such as /0"
    if path.strip("/") and not _whole(0, _MAX_DATABASE)(path[1:]):
        return (
            f"the database number in the path {path} is above {_MAX_DATABASE}, "
            "the largest that Redis's SELECT accepts; a server has databases 0 "
            "to 15 unless its 'databases' setting is changed"
        )

    options: dict[str, str] = {}
    for option in filter(None, parts.query.split("&")):
        # Decoded as redis-py decodes it ('+' is a space), while messages
        # show the value as written.
        raw_name, _, raw_value = option.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        problem = _option_problem(name, value, raw_value, parts.scheme, options)
        if problem is not None:
            return problem
        options[name] = value

    database = options.get("db")
    if path.strip("/") and database is not None and int(database) != int(path[1:]):
        return (
            f"the path {path} and the query option db={database} name different "
            "databases; keep one of them"
        )
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        # A backstop: the checks above accept nothing that redis-py rejects.
        return str(exc).rstrip(".")
    return None


def _option_problem(
    name: str, value: str, raw_value: str, scheme: str, seen: Collection[str]
) -> str | None:
    """Return why the query option ``name=value`` cannot be used, or None.

    ``raw_value`` is the value as written in the URL, and ``seen`` contains
    the options before this one.
    """
    if name in _UNSUPPORTED:
        return f"the query option {name} is not supported: {_UNSUPPORTED[name]}"
    option = _OPTIONS.get(name)
    if option is None:
        accepted = ", ".join(
            sorted(
                known
                for known, option in _OPTIONS.items()
                if scheme == "rediss" or not option.is_tls_only
            )
        )
        return (
            f"the query option {name!r} is not one that redis-py's connections "
            f"accept; expected one of {accepted}"
        )
    if option.is_tls_only and scheme != "rediss":
        return f"the query option {name} is used only with a rediss:// URL"
    if name in seen:
        return f"the query option {name} is given twice; give it once"
    if not value:
        return f"the query option {name} has no value; give one or leave it out"
    if option.is_valid(value):
        return None
    if name in _SECRET_OPTIONS:
        return f"the query option {name} must be {option.form}"
    return f"the query option {name}={raw_value!r} must be {option.form}"
