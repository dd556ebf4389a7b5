"""``cartwheel api serve``: run the HTTP API in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from services.api.settings import ApiSettings
from services.cli.arguments import integer_between
from services.common.logging import configure_logging
from services.common.settings import CommandLineValue, load_settings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``api`` command to the ``cartwheel`` parser."""
    api = subparsers.add_parser(
        "api",
        help="serve the HTTP API (latest slates, event ingestion, health, metrics)",
        description=(
            "Settings come from CARTWHEEL_API_* (CARTWHEEL_API_HOST, default "
            "127.0.0.1; CARTWHEEL_API_PORT, default 8080) and the shared "
            "CARTWHEEL_KAFKA_* and CARTWHEEL_REDIS_* variables."
        ),
    )
    actions = api.add_subparsers(dest="api_command", required=True, metavar="COMMAND")
    serve_parser = actions.add_parser(
        "serve",
        help="listen until interrupted; the OpenAPI document is at /openapi.json",
    )
    serve_parser.add_argument(
        "--host", help="address to listen on (overrides settings)"
    )
    serve_parser.add_argument(
        "--port", type=integer_between(1, 65535), help="TCP port (overrides settings)"
    )
    serve_parser.set_defaults(handler=_serve, is_service=True)


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        name: CommandLineValue(f"--{name}", value)
        for name, value in (("host", args.host), ("port", args.port))
        if value is not None
    }
    settings = load_settings(ApiSettings, **overrides)
    configure_logging(args.log_level or settings.log_level)
    # Imported here: the server loads PyTorch and River, which other
    # cartwheel commands do not need.
    from services.api.server import serve

    serve(settings)
    return 0
