"""PKCS#11 URIs (RFC 7512) naming the token object that holds the KEK.

Hand-written: no maintained Python package parses RFC 7512 (p11-kit's parser is C and not
bound; python-pkcs11 and PyKCS11 take a module path and attributes, not URIs), and the
grammar is small. What this parser accepts is narrower than the RFC on purpose, because a
URI that names something other than what the operator meant must fail, not match another
object (fail closed):

- path attributes (RFC 7512 §2.3): ``token``, ``object``, ``id``, ``type``,
  ``manufacturer``, ``serial``, ``model``, ``library-manufacturer``,
  ``library-description``, ``library-version``. Anything else (vendor ``x-`` attributes,
  the later ``slot-*`` ones) is refused: §2.3 lets a consumer that does not understand an
  attribute treat the URI as matching nothing, and refusing says so at once;
- query attributes (§2.3): ``module-path``, ``module-name``, ``pin-source`` (a ``file:``
  path only). ``pin-source=|command`` (run a program for the PIN) is refused: the service
  runs no program named by its configuration. ``pin-value`` is refused: the URI is in the
  configuration file or on the command line (``--kek``), where every local user can read
  argv, and a PIN there ends up in shell history, ``ps`` output and config backups;
- every attribute at most once (§2.3: "an attribute MUST NOT appear more than once");
- values percent-decoded (§2.3, RFC 3986 §2.1): ``id`` is bytes, the others UTF-8 text,
  no fragment, no empty attribute, only the characters the grammar allows unencoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sealgate.broker.kek import KekError

#: Field sizes of CK_TOKEN_INFO / CK_INFO (PKCS#11 v2.40 §3.2): a longer value can never
#: match, so it is refused rather than silently never found.
_MAX_LEN = {
    "token": 32,
    "manufacturer": 32,
    "model": 16,
    "serial": 16,
    "library-manufacturer": 32,
    "library-description": 32,
}
_PATH_ATTRS = frozenset(
    {
        "token",
        "object",
        "id",
        "type",
        "manufacturer",
        "serial",
        "model",
        "library-manufacturer",
        "library-description",
        "library-version",
    }
)
_QUERY_ATTRS = frozenset({"module-path", "module-name", "pin-source", "pin-value"})
#: §2.3: pk11-type values.
_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})
#: Characters allowed unencoded in a path value (unreserved, pk11-p-res-avail, "&") and in
#: a query value (unreserved, pk11-q-res-avail, "/", "?", "|"); "%" starts an escape.
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~:\[\]@!$'()*+,=&%]*")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~:\[\]@!$'()*+,=;/?|%]*")
_NAME = re.compile(r"[a-z][a-z0-9-]*")
_VERSION = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3})?")
_MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
#: Where ``module-name`` is looked for (RFC 7512 §2.3 leaves the lookup to the platform;
#: these are Debian's multiarch and p11-kit module directories, then the plain ones).
MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/lib/pkcs11",
    "/usr/lib/softhsm",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
)


def _bad(message: str) -> KekError:
    return KekError("broker.kek.uri_invalid", message)


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed PKCS#11 URI: what selects the module, the token and the object."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    library_manufacturer: str | None = None
    library_description: str | None = None
    library_version: str | None = None
    module_path: str | None = None
    module_name: str | None = None
    #: The file the PIN is read from (absolute path), or None: no login.
    pin_source: str | None = None

    def module(self) -> str:
        """The module file to load: ``module-path``, else ``module-name`` looked up in
        ``MODULE_DIRS`` (``lib<name>.so`` or ``<name>.so``)."""
        if self.module_path is not None:
            return self.module_path
        if self.module_name is not None:
            for d in MODULE_DIRS:
                for f in (f"lib{self.module_name}.so", f"{self.module_name}.so"):
                    if (Path(d) / f).is_file():
                        return str(Path(d) / f)
            raise KekError(
                "broker.kek.module_unavailable",
                f"no PKCS#11 module named {self.module_name!r} in {', '.join(MODULE_DIRS)}",
            )
        raise _bad("the URI names no PKCS#11 module: add ?module-path=/path/to/module.so")

    def display(self) -> str:
        """The URI as logs and errors show it (it holds no secret: the PIN is never in a
        URI this parser accepts; the pin-source path is shown as given)."""
        path: list[str] = []
        for name in (
            "token",
            "manufacturer",
            "serial",
            "model",
            "library-manufacturer",
            "library-description",
            "library-version",
            "object",
            "type",
        ):
            v = getattr(self, name.replace("-", "_"))
            if v is not None:
                path.append(f"{name}={quote(v, safe='')}")
        if self.id is not None:
            path.append("id=" + "".join(f"%{b:02X}" for b in self.id))
        query: list[str] = []
        if self.module_path is not None:
            query.append(f"module-path={quote(self.module_path, safe='/')}")
        if self.module_name is not None:
            query.append(f"module-name={quote(self.module_name, safe='')}")
        if self.pin_source is not None:
            query.append(f"pin-source={quote('file:' + self.pin_source, safe='/:')}")
        return "pkcs11:" + ";".join(path) + ("?" + "&".join(query) if query else "")


def _decode(raw: str, where: str) -> bytes:
    """Percent-decode (RFC 3986 §2.1): every "%" starts exactly two hex digits."""
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "%":
            h = raw[i + 1 : i + 3]
            if len(h) != 2 or not all(x in "0123456789abcdefABCDEF" for x in h):
                raise _bad(f"{where}: '%' not followed by two hex digits")
            out.append(int(h, 16))
            i += 3
        else:
            out += c.encode()
            i += 1
    return bytes(out)


def _text(value: bytes, where: str) -> str:
    try:
        s = value.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"{where}: not UTF-8 after percent-decoding") from None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in s):
        raise _bad(f"{where}: control characters")
    return s


def _split(
    part: str, sep: str, chars: re.Pattern[str], allowed: frozenset[str], kind: str
) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if part == "":
        return out
    for attr in part.split(sep):
        name, eq, raw = attr.partition("=")
        if not eq or not _NAME.fullmatch(name):
            raise _bad(f"{kind} attribute {name[:32]!r} is not name=value")
        if name not in allowed:
            raise _bad(f"unknown {kind} attribute {name[:32]!r} (refused: it could not be matched)")
        if name in out:
            raise _bad(f"{kind} attribute {name!r} appears more than once")
        if not chars.fullmatch(raw):
            raise _bad(f"{name}: characters that must be percent-encoded")
        out[name] = _decode(raw, name)
    return out


def _pin_source(value: str) -> str:
    if value.startswith("|"):
        raise KekError(
            "broker.kek.pin_source_invalid",
            "pin-source=|command is not supported: give pin-source=file:/path/to/pin-file",
        )
    # RFC 7512 §2.3: pin-source is a URI (file: here) or, as many consumers accept, a path.
    if value.startswith("file://"):
        path = value[len("file://") :]
        if not path.startswith("/"):
            raise KekError(
                "broker.kek.pin_source_invalid", "pin-source file URIs name a local absolute path"
            )
    elif value.startswith("file:"):
        path = value[len("file:") :]
    elif ":" in value.split("/", 1)[0]:
        raise KekError("broker.kek.pin_source_invalid", "pin-source must be file:/ABSOLUTE/PATH")
    else:
        path = value
    if not path.startswith("/"):
        raise KekError(
            "broker.kek.pin_source_invalid",
            "pin-source must be an absolute path (relative to what the service's cwd is?)",
        )
    return path


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse ``pkcs11:PATH[?QUERY]``; KekError ``broker.kek.uri_invalid`` (or
    ``broker.kek.pin_in_uri``, ``broker.kek.pin_source_invalid``) otherwise."""
    if len(text) > 4096:
        raise _bad("URI longer than 4096 characters")
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() != "pkcs11":  # RFC 3986 §3.1: schemes are case-insensitive
        raise _bad("not a pkcs11: URI")
    if "#" in rest:
        raise _bad("PKCS#11 URIs have no fragment ('#' must be written %23)")
    path, _, query = rest.partition("?")
    p = _split(path, ";", _PATH_CHARS, _PATH_ATTRS, "path")
    q = _split(query, "&", _QUERY_CHARS, _QUERY_ATTRS, "query")
    if "pin-value" in q:
        raise KekError(
            "broker.kek.pin_in_uri",
            "pin-value is refused: a PIN in the URI ends up in argv, shell history and the "
            "configuration; put it in a 0600 file and give pin-source=file:/path",
        )
    t = {k: _text(v, k) for k, v in p.items() if k != "id"}
    for k, n in _MAX_LEN.items():
        if k in t and len(t[k].encode()) > n:
            raise _bad(f"{k} is longer than its {n}-byte PKCS#11 field")
    if "object" in t and not t["object"]:
        raise _bad("object is empty")
    if "type" in t and t["type"] not in _TYPES:
        raise _bad(f"type {t['type'][:32]!r} is not one of {', '.join(sorted(_TYPES))}")
    if "library-version" in t and not _VERSION.fullmatch(t["library-version"]):
        raise _bad("library-version is not M or M.N")
    qt = {k: _text(v, k) for k, v in q.items()}
    module_path = qt.get("module-path")
    if module_path is not None and not module_path.startswith("/"):
        raise _bad("module-path must be an absolute path")
    module_name = qt.get("module-name")
    if module_name is not None and not _MODULE_NAME.fullmatch(module_name):
        raise _bad("module-name is a library name without directory or suffix")
    pin = qt.get("pin-source")
    return Pkcs11Uri(
        token=t.get("token"),
        object=t.get("object"),
        id=p.get("id"),
        type=t.get("type"),
        manufacturer=t.get("manufacturer"),
        serial=t.get("serial"),
        model=t.get("model"),
        library_manufacturer=t.get("library-manufacturer"),
        library_description=t.get("library-description"),
        library_version=t.get("library-version"),
        module_path=module_path,
        module_name=module_name,
        pin_source=_pin_source(pin) if pin is not None else None,
    )
