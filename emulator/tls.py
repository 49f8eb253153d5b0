"""The emulator's TLS material: a private CA (``ca.pem``) and a server certificate it signs for
127.0.0.1, ::1 and localhost. Both are kept in the state directory and reused while they are valid,
so a client that trusted ``ca.pem`` once keeps trusting the emulator across restarts. Extra names (a
Docker service name, the bound address) are added to the server certificate when asked for."""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=7)
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Writes a file atomically (temporary file, then rename) with the given permissions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Serialises key and certificate generation between emulators sharing a state directory."""
    with open(state_dir / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Crier Teams emulator CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _covers(cert: x509.Certificate, names: tuple[str, ...]) -> bool:
    """Whether the certificate's subject alternative names include every one of ``names``."""
    try:
        present = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return all(_general_name(name) in present for name in names)


def _make_server(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, server_names: tuple[str, ...]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    names = [_general_name(name) for name in server_names]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """A certificate and its EC key from disk, or None when either is missing, unreadable or mismatched."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return None
    return cert, key


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def ensure_certificates(state_dir: Path, extra_names: tuple[str, ...] = ()) -> TlsFiles:
    """Reuses the CA and server certificate in ``state_dir`` when valid (and, for the server
    certificate, naming localhost, 127.0.0.1, ::1 and ``extra_names``), otherwise makes new ones."""
    server_names = tuple(dict.fromkeys(SERVER_NAMES + extra_names))
    files = TlsFiles(state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server-key.pem")
    ca_key_file = state_dir / "ca-key.pem"
    with state_lock(state_dir):
        ca = _load_pair(files.ca_file, ca_key_file)
        if ca is None:
            ca = _make_ca()
            write_private(ca_key_file, _key_pem(ca[1]))
            write_private(files.ca_file, ca[0].public_bytes(serialization.Encoding.PEM), 0o644)
        server = _load_pair(files.cert_file, files.key_file)
        if server is None or not _signed_by(server[0], ca[0]) or not _covers(server[0], server_names):
            server = _make_server(ca[0], ca[1], server_names)
            write_private(files.key_file, _key_pem(server[1]))
            write_private(files.cert_file, server[0].public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    return context
