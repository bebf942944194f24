"""Collateral cache directory and a bounded HTTP fetch helper.

Collateral (AMD VCEK/VLEK certificates, chains and CRLs; Intel TCB info, QE identity, PCK
CRLs) is supplied with evidence, read from this cache, or fetched from the vendor when the
host has network (README "Storage and security"). The cache makes verification
work offline. It is a plain directory with one subdirectory per platform; every write is
atomic (temporary file + fsync + rename) so a crash or a concurrent reader never sees a
half-written file. Nothing read from the cache is trusted: callers verify it like any other
input.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from sealgate.errors import CollateralError, UsageError

#: Largest response accepted from a collateral service. AMD CRLs and Intel PCS bodies are
#: well below 1 MiB; anything bigger is not collateral.
MAX_FETCH_BYTES = 4 << 20
#: Seconds to wait for connect and for each read.
FETCH_TIMEOUT = 15.0
#: Cache path components: letters, digits and a few separators; never "..".
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")


def default_cache_dir() -> Path:
    """``$SEALGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sealgate/collateral``."""
    env = os.environ.get("SEALGATE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sealgate" / "collateral"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class CollateralCache:
    """``<root>/<platform>/<part>/.../<name>``: cached collateral files by platform."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, platform: str, *parts: str) -> Path:
        for p in (platform, *parts):
            if not _COMPONENT.match(p):
                raise UsageError("collateral.cache.bad_path", f"bad cache path component {p!r}")
        return self.root.joinpath(platform, *parts)

    def get(self, platform: str, *parts: str) -> bytes | None:
        p = self.path(platform, *parts)
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_FETCH_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CollateralError(
                "collateral.cache.unreadable", f"cannot read {p}: {e.strerror}"
            ) from None
        if len(data) > MAX_FETCH_BYTES:
            raise CollateralError("collateral.cache.too_large", f"{p} exceeds {MAX_FETCH_BYTES}")
        return data

    def put(self, platform: str, *parts: str, data: bytes) -> Path:
        p = self.path(platform, *parts)
        atomic_write(p, data)
        return p


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) URLs (urllib would also follow ftp://)."""

    def redirect_request(  # type: ignore[no-untyped-def]
        self, req, fp, code, msg, headers, newurl
    ):
        if not newurl.startswith(("http://", "https://")):
            raise CollateralError("collateral.fetch.bad_redirect", f"redirect to {newurl!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameSchemeRedirects)


def fetch(
    url: str,
    *,
    timeout: float = FETCH_TIMEOUT,
    max_bytes: int = MAX_FETCH_BYTES,
    headers: dict[str, str] | None = None,
) -> bytes:
    """GET ``url`` (http or https only) with a timeout and a response size cap.

    Failures raise ``CollateralError`` with codes ``collateral.fetch.not_found`` (HTTP 404),
    ``collateral.fetch.http_error`` (other statuses), ``collateral.fetch.too_large`` and
    ``collateral.fetch.unreachable`` (DNS, refused, timeout, TLS).
    """
    return fetch_with_header(url, None, timeout=timeout, max_bytes=max_bytes, headers=headers)[0]


def fetch_with_header(
    url: str,
    header: str | None,
    *,
    timeout: float = FETCH_TIMEOUT,
    max_bytes: int = MAX_FETCH_BYTES,
    headers: dict[str, str] | None = None,
) -> tuple[bytes, str | None]:
    """``fetch``, also returning one response header's raw value (None when absent): Intel
    PCS delivers issuer chains in headers. Same limits, redirect rule and error codes."""
    if not url.startswith(("http://", "https://")):
        raise UsageError("collateral.fetch.bad_url", f"only http(s) URLs are fetched: {url!r}")
    req = urllib.request.Request(url, headers=headers or {}, method="GET")  # noqa: S310
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise CollateralError(
                    "collateral.fetch.too_large", f"{url}: {length} bytes exceeds {max_bytes}"
                )
            body: bytes = resp.read(max_bytes + 1)
            value: str | None = resp.headers.get(header) if header else None
    except urllib.error.HTTPError as e:
        code = "collateral.fetch.not_found" if e.code == 404 else "collateral.fetch.http_error"
        raise CollateralError(code, f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CollateralError("collateral.fetch.unreachable", f"{url}: {reason}") from None
    if len(body) > max_bytes:
        raise CollateralError("collateral.fetch.too_large", f"{url}: exceeds {max_bytes} bytes")
    return body, value
