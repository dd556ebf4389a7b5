"""Checks of the PEM files that the Kafka TLS settings name.

librdkafka loads these files only when a client is built, and its errors
("no certificate or crl found", "PEM lib") name no variable. Each file is
therefore checked on its own first: the CA file must load as certificates,
and the client certificate as a certificate. Then the client certificate and
its private key are loaded together, so that each error names the file at
fault. Only Python's ssl module is used, because it wraps the same
OpenSSL that librdkafka uses.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CERTIFICATE_BLOCK",
    "PRIVATE_KEY_BLOCK",
    "KeyProblem",
    "ca_file_problem",
    "certificate_file_problem",
    "client_key_problem",
    "is_encrypted_key",
    "pem_file_problem",
]

# The text each client-certificate file must contain, the PEM line that names
# it in an error, and the noun for such a file.
CERTIFICATE_BLOCK = (
    "-----BEGIN CERTIFICATE-----",
    "-----BEGIN CERTIFICATE-----",
    "a certificate",
)
# RSA, EC and PKCS#8 keys, encrypted or not, all end their header this way.
PRIVATE_KEY_BLOCK = (
    "PRIVATE KEY-----",
    "-----BEGIN ... PRIVATE KEY-----",
    "a private key",
)


@dataclass(frozen=True)
class KeyProblem:
    """A private key that cannot be used, and the setting at fault.

    ``field`` is ``ssl_key_location`` or ``ssl_key_password``.
    """

    field: str
    message: str


def pem_file_problem(
    path: str, block: tuple[str, str, str] | None = None
) -> str | None:
    """Return why the PEM file at ``path`` cannot be used, or None.

    Args:
        path: the file's path as set.
        block: the text the file must contain, the PEM line to name in the
            error and what such a file is called; None accepts any PEM block.
    """
    if not path.strip():
        return "the path is empty"
    location = Path(path)
    if location.is_dir():
        return "the path is a directory, not a file"
    try:
        with location.open("rb") as ca_file:
            content = ca_file.read()
    except FileNotFoundError:
        return "no file exists at this path"
    except OSError as exc:
        return f"the file cannot be read ({exc.strerror or exc})"
    # librdkafka fails on a file without a PEM block with an error that names
    # no variable ("no certificate or crl found").
    if b"-----BEGIN " not in content:
        return "the file has no '-----BEGIN' line, so it is not in PEM format"
    if block is not None and block[0].encode() not in content:
        _, line, noun = block
        return f"the file has no '{line}' line, so it is not {noun} in PEM format"
    return None


def ca_file_problem(path: Path) -> str | None:
    """Return why OpenSSL cannot load the file at ``path`` as CA certificates."""
    try:
        # The feedback service builds its context the same way.
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        return f"OpenSSL cannot load CA certificates from this file ({exc})"
    return None


def certificate_file_problem(path: Path) -> str | None:
    """Return why OpenSSL cannot load the file at ``path`` as a certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # Loading the file as trusted certificates parses each certificate in
        # it without needing the private key.
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        return f"OpenSSL cannot load the certificate in this file ({exc})"
    return None


def client_key_problem(
    certificate: Path, key: Path, password: str | None
) -> KeyProblem | None:
    """Return why the private key cannot be used with the certificate, or None.

    The certificate must have passed :func:`certificate_file_problem`, so a
    failure here lies with the key or its password. The password is
    requested by OpenSSL only once the encrypted key parses, so a failure
    after that request blames the password. A wrong password and an
    encrypted key whose content is damaged give the same OpenSSL error,
    and both are reported as the password's.
    """
    is_password_requested = False

    def provide_password() -> str:
        nonlocal is_password_requested
        is_password_requested = True
        return password or ""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A callable keeps OpenSSL from asking for a password on the terminal.
        context.load_cert_chain(certificate, key, password=provide_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return KeyProblem(
                "ssl_key_location",
                "the private key in CARTWHEEL_KAFKA_SSL_KEY_LOCATION does not "
                "belong to the certificate in CARTWHEEL_KAFKA_SSL_CERTIFICATE_LOCATION",
            )
        if password is not None and is_password_requested:
            return KeyProblem(
                "ssl_key_password",
                "the password does not decrypt the private key in "
                "CARTWHEEL_KAFKA_SSL_KEY_LOCATION, or the encrypted key is "
                f"damaged ({exc})",
            )
        return KeyProblem(
            "ssl_key_location",
            f"OpenSSL cannot load the private key in this file ({exc})",
        )
    return None


def is_encrypted_key(path: Path) -> bool:
    """Return whether the PEM private key at ``path`` is encrypted."""
    try:
        content = path.read_bytes()
    except OSError:
        # The key's own check reported the file already.
        return False
    # PKCS#8 names the block ENCRYPTED PRIVATE KEY, and the older OpenSSL
    # format marks the block with a Proc-Type header.
    return any(
        marker in content
        for marker in (b"ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
    )
