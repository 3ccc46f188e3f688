"""TLS and mTLS for the gRPC port: the `server.tls` config section and the server credentials built from it.

Why the checks at config time: gRPC core only reads the PEM files when the first client connects, so a typo, a key that
belongs to another certificate or an encrypted key would otherwise surface as handshake failures in every client while
the server reports SERVING. `TLSConfig` reads and cross-checks the files once at start-up (with the stdlib `ssl`
module, the same OpenSSL) and names the key that is wrong.

Why the reload: cert-manager and Kubernetes secret mounts replace certificates in place every few weeks; a sidecar that
kept the first certificate would start failing handshakes when it expires. The credentials re-read the files when their
modification times change (checked on each new connection, a few `stat` calls) and keep serving the previous
certificate if the new files do not validate (e.g. a half-written rotation), logging once per change.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from guardrail_server.logs import get_logger

log = get_logger("guardrail.tls")

_PEM_MARKER = b"-----BEGIN "


def _read_pem(path: str, what: str) -> bytes:
    """The file's bytes, or ValueError saying why it cannot serve as `what` (the pydantic error then names the key)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what} {path!r} does not exist")
    if not p.is_file():
        raise ValueError(f"{what} {path!r} is not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {path!r} is not readable: {exc.strerror or exc}") from None
    if _PEM_MARKER not in data:
        raise ValueError(f"{what} {path!r} is not PEM (no '-----BEGIN' line)")
    return data


def _refuse_password() -> str:
    raise ValueError("the private key is encrypted; gRPC needs an unencrypted PEM key (protect the file instead)")


def _check_pair(cert_file: str, key_file: str) -> None:
    """Raises ValueError unless the key belongs to the certificate (OpenSSL's own check, as the handshake would do)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=_refuse_password)
    except ssl.SSLError as exc:
        raise ValueError(f"does not match the certificate in cert_file, or is not a private key ({exc.reason})") from None


def _check_ca(ca_file: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ValueError(f"holds no usable CA certificate ({exc.reason})") from None


class TLSConfig(BaseModel):
    """`server.tls`: serve gRPC over TLS; with `client_ca_file` also require and verify client certificates (mTLS)."""

    model_config = ConfigDict(extra="forbid")

    cert_file: str = Field(description="PEM server certificate (chain: leaf first)")
    key_file: str = Field(description="PEM private key of cert_file, unencrypted")
    client_ca_file: str | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)"
    )
    reload: bool = Field(True, description="re-read the files when they change on disk (certificate rotation)")

    @field_validator("cert_file")
    @classmethod
    def _cert_readable(cls, value: str) -> str:
        _read_pem(value, "certificate file")
        return value

    @field_validator("key_file")
    @classmethod
    def _key_matches(cls, value: str, info: ValidationInfo) -> str:
        _read_pem(value, "key file")
        cert = info.data.get("cert_file")
        if cert is not None:  # None: cert_file already failed and carries its own error
            _check_pair(cert, value)
        return value

    @field_validator("client_ca_file")
    @classmethod
    def _ca_readable(cls, value: str | None) -> str | None:
        if value is not None:
            _read_pem(value, "client CA file")
            _check_ca(value)
        return value

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None


@dataclass(frozen=True)
class _Material:
    key: bytes
    cert: bytes
    ca: bytes | None
    stamp: tuple[float, ...]

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], root_certificates=self.ca)


class _Reloader:
    """The `certificate_configuration_fetcher` of gRPC's dynamic credentials. gRPC core calls it from its own threads
    at each new handshake; it returns a new configuration only when the files changed and validate."""

    def __init__(self, tls: TLSConfig, material: _Material) -> None:
        self.tls = tls
        self.current = material
        self._failed_stamp: tuple[float, ...] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = _stamp(self.tls)
        except OSError:
            stamp = None
        if stamp is None or stamp == self.current.stamp or stamp == self._failed_stamp:
            return None
        with self._lock:
            if stamp == self.current.stamp:
                return None
            try:
                _check_pair(self.tls.cert_file, self.tls.key_file)
                if self.tls.client_ca_file:
                    _check_ca(self.tls.client_ca_file)
                material = _load(self.tls)
            except (OSError, ValueError) as exc:
                if stamp != self._failed_stamp:
                    log.error("tls_reload_failed", reason=str(exc)[:200], keeping="previous certificate")
                self._failed_stamp = stamp
                return None
            self.current = material
            log.info("tls_reloaded", cert_file=self.tls.cert_file)
            return material.configuration()


def _stamp(tls: TLSConfig) -> tuple[float, ...]:
    files = [tls.cert_file, tls.key_file, *([tls.client_ca_file] if tls.client_ca_file else [])]
    return tuple(os.stat(f).st_mtime_ns for f in files)


def _load(tls: TLSConfig) -> _Material:
    stamp = _stamp(tls)
    ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return _Material(Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes(), ca, stamp)


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """Credentials for `add_secure_port`. With a client CA, gRPC requires and verifies client certificates."""
    material = _load(tls)
    if not tls.reload:
        return grpc.ssl_server_credentials(
            [(material.key, material.cert)], root_certificates=material.ca, require_client_auth=tls.mutual
        )
    return grpc.dynamic_ssl_server_credentials(
        material.configuration(), _Reloader(tls, material), require_client_authentication=tls.mutual
    )
