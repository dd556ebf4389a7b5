"""Check at start that the Redis URL's password, user and database work.

The settings check only the URL's form. A wrong password or a database that
the server does not have fails on every command, and retrying cannot fix
either, so a service stops at start with the variable's name instead of
retrying forever. So does any other error reply of the server, such as an
unknown command. A server that does not respond is another
matter: Redis may start after the service, and every service retries Redis
on its own.
"""

from __future__ import annotations

import logging

import redis

from services.common.errors import InfrastructureError, InvalidSettingsError
from services.common.settings import RedisSettings, masked_settings

__all__ = ["verify_redis"]

logger = logging.getLogger(__name__)

_VARIABLE = "CARTWHEEL_REDIS_URL"


def verify_redis(settings: RedisSettings, *, timeout_seconds: float = 2.0) -> None:
    """Open one connection with the URL's credentials and database.

    Args:
        settings: the Redis block of a service's settings.
        timeout_seconds: the connect and reply timeout of the check.

    Raises:
        InvalidSettingsError: the server refused the user or password, or has
            no database with the URL's number. The message names
            ``CARTWHEEL_REDIS_URL`` with the password masked.
        InfrastructureError: the server replied with another error, such as
            an unknown command. The message names the variable too.
    """
    url = settings.url.get_secret_value()
    masked_url = masked_settings(settings)["url"]
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        retry_on_timeout=False,
    )
    try:
        # Connecting signs in and selects the database, as every command does.
        # A probe command such as PING might be forbidden by the user's ACL
        # although the service never sends it.
        pool = client.connection_pool
        pool.release(pool.get_connection())
    except redis.exceptions.AuthenticationError as exc:
        # Without a password, Redis's own text is about HELLO or AUTH.
        problem = (
            "the server requires a password and the URL has none"
            if client.connection_pool.connection_kwargs.get("password") is None
            else f"Redis refused the credentials ({exc})"
        )
        raise InvalidSettingsError(
            f"invalid setting {_VARIABLE}={masked_url!r}: {problem}; expected a URL "
            "with the user and password that the server accepts, such as "
            "redis://:PASSWORD@host:6379/0"
        ) from exc
    except redis.exceptions.NoPermissionError as exc:
        if "'select'" not in str(exc):
            # The denied command is another one, such as CLIENT SETNAME for
            # the URL's client_name.
            raise _failed_check(masked_url, exc) from exc
        raise InvalidSettingsError(
            f"invalid setting {_VARIABLE}={masked_url!r}: the user may not select "
            f"the URL's database ({exc}); expected a user whose ACL allows "
            "SELECT, or the database 0"
        ) from exc
    except redis.exceptions.ResponseError as exc:
        if "DB index" not in str(exc):
            raise _failed_check(masked_url, exc) from exc
        expected = _expected_database(_database_count(client))
        raise InvalidSettingsError(
            f"invalid setting {_VARIABLE}={masked_url!r}: the server has no database "
            f"with this number ({exc}); {expected}"
        ) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        # LIMITATION(L-81): a wrong host or a TLS mismatch cannot be distinguished from
        # a server that is still starting, so it is only reported here.
        hint = (
            "; a rediss:// URL needs a server that speaks TLS on that port"
            if url.startswith("rediss://")
            else ""
        )
        logger.warning(
            "redis did not respond at start, going on and retrying when used "
            "url=%s error=%s%s",
            masked_url,
            exc,
            hint,
        )
    except redis.exceptions.RedisError as exc:
        raise _failed_check(masked_url, exc) from exc
    finally:
        client.close()


def _failed_check(masked_url: str, exc: redis.exceptions.RedisError) -> Exception:
    """Return the error for a start check that Redis failed in an unforeseen way.

    The server replied, so retrying would fail the same way. The likely
    causes are an option of the URL that the server does not support, the
    user's ACL or an old server.
    """
    return InfrastructureError(
        f"Redis failed the start check of {_VARIABLE}={masked_url!r}: "
        f"{type(exc).__name__}: {str(exc).rstrip('.')}; check the URL's query "
        "options, the user's ACL and the server's version"
    )


def _database_count(client: redis.Redis) -> int | None:
    """Read the server's 'databases' setting over a connection to database 0.

    The connection keeps the client's credentials and timeouts. Returns None
    when the server rejects CONFIG GET, which managed services and restrictive
    ACLs often do, or does not reply.
    """
    pool = client.connection_pool
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "db": 0},
        )
    )
    try:
        reply = probe.config_get("databases")
    except redis.exceptions.RedisError as exc:
        logger.debug("reading the server's database count failed error=%s", exc)
        return None
    finally:
        probe.close()
    value = reply.get("databases")
    if value is None or not str(value).isdigit():
        return None
    return int(value)


def _expected_database(count: int | None) -> str:
    """Return the expected form of the URL's database for a server with ``count``."""
    if count is None:
        return (
            "expected a number below the server's 'databases' setting, which is "
            "16 unless changed"
        )
    if count == 1:
        return "expected the number 0, since the server has 1 database"
    return (
        f"expected a number from 0 to {count - 1}, since the server has "
        f"{count} databases"
    )
