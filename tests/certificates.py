"""Test certificates for mutual TLS, made with the openssl command at test time.

One private CA signs a server certificate for 127.0.0.1 and a client
certificate. Nothing is downloaded, and every file lives in the test's folder.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Certificates", "KEY_PASSWORD", "make_certificates"]

KEY_PASSWORD = "key-secret"

# Elliptic-curve keys take milliseconds to make; RSA keys take far longer.
_NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

# Python's ssl module checks certificates strictly (key identifiers, key
# usage), so each signed certificate carries the usual extensions.
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
_CLIENT_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files that :func:`make_certificates` wrote."""

    ca: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path
    encrypted_client_key: Path
    """The client key encrypted with :data:`KEY_PASSWORD`."""
    other_ca: Path
    """A second CA that signed nothing the server trusts."""
    untrusted_client_certificate: Path
    untrusted_client_key: Path
    """A client certificate and key signed by :attr:`other_ca`."""


def make_certificates(folder: Path) -> Certificates:
    """Write a CA, a server certificate and client certificates into ``folder``.

    Skips the calling test when the openssl command is not installed.
    """
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca(folder, "ca")
    other_ca, other_ca_key = _make_ca(folder, "other-ca")
    server_certificate, server_key = _make_signed(
        folder, "server", ca, ca_key, _SERVER_EXTENSIONS
    )
    client_certificate, client_key = _make_signed(
        folder, "client", ca, ca_key, _CLIENT_EXTENSIONS
    )
    untrusted_certificate, untrusted_key = _make_signed(
        folder, "untrusted-client", other_ca, other_ca_key, _CLIENT_EXTENSIONS
    )
    encrypted_key = folder / "client-encrypted.key"
    _openssl(
        "pkey",
        "-in",
        str(client_key),
        "-out",
        str(encrypted_key),
        "-aes256",
        "-passout",
        f"pass:{KEY_PASSWORD}",
    )
    return Certificates(
        ca=ca,
        server_certificate=server_certificate,
        server_key=server_key,
        client_certificate=client_certificate,
        client_key=client_key,
        encrypted_client_key=encrypted_key,
        other_ca=other_ca,
        untrusted_client_certificate=untrusted_certificate,
        untrusted_client_key=untrusted_key,
    )


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    certificate, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req",
        "-x509",
        *_NEW_KEY,
        "-keyout",
        str(key),
        "-out",
        str(certificate),
        "-days",
        "2",
        "-subj",
        f"/CN=cartwheel test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return certificate, key


def _make_signed(
    folder: Path, name: str, ca: Path, ca_key: Path, extensions: str
) -> tuple[Path, Path]:
    certificate, key = folder / f"{name}.pem", folder / f"{name}.key"
    request = folder / f"{name}.csr"
    extensions_file = folder / f"{name}.ext"
    extensions_file.write_text(extensions)
    _openssl(
        "req",
        *_NEW_KEY,
        "-keyout",
        str(key),
        "-out",
        str(request),
        "-subj",
        f"/CN={name}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(certificate),
        "-days",
        "2",
        "-extfile",
        str(extensions_file),
    )
    return certificate, key


def _openssl(*arguments: str) -> None:
    subprocess.run(
        ["openssl", *arguments],
        check=True,
        capture_output=True,
        timeout=30,
    )
