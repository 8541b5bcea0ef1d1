"""TLS for the receivers, configured like the OpenTelemetry Collector's configtls (`cert_file`, `key_file`,
`client_ca_file`, `min_version`, `reload_interval`).

Both receivers read the same settings; each gets what its server library takes: an `ssl.SSLContext` for aiohttp
(OTLP/HTTP and the API on the same listener), `ServerCredentials` for grpcio. With `reload_interval`, renewed
files are picked up for new connections without a restart: when a connection arrives and the interval has passed,
the files' identities (inode, size, mtime) are compared with those last loaded, and a changed set is loaded. A set
that does not load (a renewal caught between writing the certificate and the key) leaves the previous one in use
and is tried again at the next change. Messages name files and keys, never their contents.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from .receivers.config import TlsServerConfig

__all__ = [
    "CertificateFiles",
    "ReloadingSslContext",
    "describe_tls",
    "grpc_server_credentials",
    "ssl_context",
    "tls_problem",
]

logger = logging.getLogger(__name__)

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_FILE_KEYS = ("cert_file", "key_file", "client_ca_file")


def _no_password() -> bytes:
    """An encrypted key fails to load instead of OpenSSL prompting on the terminal."""
    return b""


def ssl_context(config: TlsServerConfig) -> ssl.SSLContext:
    """A server context from the files as they are now; raises OSError or ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.min_version]
    context.load_cert_chain(config.cert_file, config.key_file, password=_no_password)
    if config.client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=config.client_ca_file)
    return context


def _shown(path: str) -> str:
    """The path for a message, unless the value looks like PEM text pasted in place of a path."""
    if "-----" in path or "\n" in path:
        return "(the value looks like PEM content, not a file path)"
    return repr(path)


def tls_problem(config: TlsServerConfig) -> tuple[str, str] | None:
    """What is wrong with these files, as (key, message), or None: checked at load so a bad file is a config
    error naming the key and file, not a failure at the first connection."""
    for key in _FILE_KEYS:
        path = getattr(config, key)
        if path is None:
            continue
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            return key, f"cannot read {_shown(path)}: {exc.strerror or exc}"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=config.cert_file)
    except ssl.SSLError:
        return "cert_file", f"{_shown(config.cert_file)} holds no PEM certificate"
    if config.client_ca_file is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=config.client_ca_file)
        except ssl.SSLError:
            return "client_ca_file", f"{_shown(config.client_ca_file)} holds no PEM CA certificate"
    try:
        ssl_context(config)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return (
                "key_file",
                f"{_shown(config.key_file)} is not the private key of cert_file {_shown(config.cert_file)}",
            )
        return (
            "key_file",
            f"{_shown(config.key_file)} holds no unencrypted PEM private key (encrypted keys are not supported)",
        )
    except OSError as exc:  # a file removed since the checks above
        return "cert_file", f"cannot load: {exc.strerror or exc}"
    return None


def describe_tls(config: TlsServerConfig | None) -> str:
    """For the start log line: how a listener is protected."""
    if config is None:
        return "plaintext"
    return f"TLS {config.min_version}+" + (", client certificates required" if config.client_ca_file else "")


@dataclass(frozen=True)
class PemSet:
    cert: bytes
    key: bytes
    client_ca: bytes | None


_Signature = tuple[tuple[int, int, int, int] | None, ...]


class CertificateFiles:
    """The configured files and the identity of the set last loaded; `changed` says when to load again."""

    def __init__(self, config: TlsServerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: _Signature = ()
        self._checked = clock()

    def _signature(self) -> _Signature:
        out = []
        for key in _FILE_KEYS:
            path = getattr(self.config, key)
            try:
                info = os.stat(path) if path is not None else None  # follows symlinks (Kubernetes secret mounts)
            except OSError:
                info = None
            out.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) if info else None)
        return tuple(out)

    def load(self) -> tuple[ssl.SSLContext, PemSet]:
        """Load and check the set as it is now; raises OSError or ssl.SSLError, or ValueError when a file
        changed while it was read (the next check loads it again)."""
        before = self._signature()
        context = ssl_context(self.config)  # checks the key matches the certificate
        pems = PemSet(
            _read(self.config.cert_file),
            _read(self.config.key_file),
            _read(self.config.client_ca_file) if self.config.client_ca_file else None,
        )
        if self._signature() != before:
            raise ValueError("the files changed while being read")
        self._loaded = before
        return context, pems

    def reload_if_changed(self) -> tuple[ssl.SSLContext, PemSet] | None:
        """A newly loaded set when the interval has passed and the files changed, else None (and on failure,
        logged: the previous set stays in use)."""
        interval = self.config.reload_interval
        if interval is None:
            return None
        with self._lock:
            now = self._clock()
            if now - self._checked < interval:
                return None
            self._checked = now
            if self._signature() == self._loaded:
                return None
            try:
                loaded = self.load()
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._loaded = self._signature()  # tried; the next change is tried again
                logger.warning(
                    "TLS: renewed files of cert_file %s not loaded (%s); the previous certificate stays in use",
                    self.config.cert_file,
                    _reason(exc),
                )
                return None
            logger.info("TLS: reloaded cert_file %s and the files with it", self.config.cert_file)
            return loaded


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a matching certificate and key: {exc.reason or exc.__class__.__name__}"
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return str(exc)


class ReloadingSslContext:
    """The context the HTTP listener is created with. With `reload_interval`, each handshake is moved onto the
    context of the files last loaded: OpenSSL calls the server-name callback on every handshake (with or without
    SNI), where a handshake's context may be replaced. A fresh context rather than `load_cert_chain` on the old
    one, so that a replaced client CA stops being trusted."""

    def __init__(self, config: TlsServerConfig) -> None:
        self._files = CertificateFiles(config)
        self.context, _ = self._files.load()
        self._current = self.context
        if config.reload_interval is not None:
            self.context.sni_callback = self._choose

    def _choose(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        loaded = self._files.reload_if_changed()
        if loaded is not None:
            self._current = loaded[0]
        if self._current is not self.context:
            connection.context = self._current


def grpc_server_credentials(config: TlsServerConfig) -> grpc.ServerCredentials:
    """grpcio's TLS credentials. grpcio accepts TLS 1.2 and 1.3 and has no setting for a minimum, which is why
    `min_version: "1.3"` is refused on gRPC at load. With `reload_interval`, grpcio asks before every handshake
    whether the certificates changed."""
    files = CertificateFiles(config)
    _, pems = files.load()
    require = config.client_ca_file is not None
    if config.reload_interval is None:
        return grpc.ssl_server_credentials([(pems.key, pems.cert)], pems.client_ca, require)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        loaded = files.reload_if_changed()
        return _grpc_certificates(loaded[1]) if loaded is not None else None

    return grpc.dynamic_ssl_server_credentials(_grpc_certificates(pems), fetch, require)


def _grpc_certificates(pems: PemSet) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(pems.key, pems.cert)], pems.client_ca)
