"""The KEK as a non-extractable AES-256 key in a PKCS#11 token (python-pkcs11).

The key object (PKCS#11 v2.40 §4.4, §4.7): CKK_AES, CKA_VALUE_LEN 32, CKA_TOKEN, CKA_PRIVATE,
CKA_SENSITIVE, not CKA_EXTRACTABLE (so CKA_VALUE never leaves the token, not even wrapped),
CKA_ENCRYPT and CKA_DECRYPT only, labelled with the URI's ``object``. It is created in the
token on first start when absent, as the key file is; an existing object that could leave
the token (extractable, not sensitive) or is not AES-256 is refused.

Wrap is CKM_AES_GCM in the token (PKCS#11 v2.40 curr §2.12.3, NIST SP 800-38D) with a 96-bit
IV made here with os.urandom (random IVs stay safe for 2^32 wraps per key, SP 800-38D §8.3;
a KEK wraps a few thousand items), a 128-bit tag and the caller's AAD behind a prefix of our
own. The blob is ``SGH1 ‖ IV ‖ ciphertext ‖ tag``: a version distinct from the file
provider's ``nonce ‖ ciphertext``, and the AAD prefix makes a blob of one provider fail
under the other even if it were fed to it.

Threads: python-pkcs11 (0.10) calls C_Initialize with NULL arguments, by which the
application promises the module it will not call it from several threads at once (PKCS#11
v2.40 base §5.4, C_Initialize; SoftHSM then runs without its own locks, and concurrent
calls fail with CKR_GENERAL_ERROR). So every call into a module holds that module's lock
(``_module_lock``): one token operation at a time per process, ≈ 30 µs each on SoftHSM, a
network round trip on a network HSM (more worker processes or replicas add parallelism).
Each provider keeps a session (a small pool, for a library that initializes with
CKF_OS_LOCKING_OK), each with its own handle to the key. The PIN is read from
``pin-source`` once, kept in memory only for logging in, never logged, never in an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import queue
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams

from sealgate.broker.kek import KekError, KekProvider
from sealgate.broker.pkcs11uri import Pkcs11Uri, parse_pkcs11_uri

log = logging.getLogger("sealgate.kek")

_MAGIC = b"SGH1"
_IV_SIZE = 12
_TAG_BITS = 128
_AAD_PREFIX = b"sealgate/pkcs11-kek v1\x00"
MAX_PIN_BYTES = 1024
#: Sessions per provider: each wrap or unwrap holds one for a token round trip.
POOL_SIZE = 2
_POOL_WAIT = 30.0
_CREATE_TRIES = 10
#: Seconds between the two looks that must both see the same single KEK object.
_SETTLE = 0.05
#: Looks that see several objects before they are taken for duplicates, not a race.
_CROWDED_LOOKS = 3

#: Errors after which a session is not handed out again (it, or the token, is gone).
_BROKEN = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.DeviceRemoved,
    p11e.DeviceError,
    p11e.TokenNotPresent,
    p11e.UserNotLoggedIn,
    p11e.KeyHandleInvalid,
    p11e.ObjectHandleInvalid,
)
_PIN_ERRORS = (
    p11e.PinIncorrect,
    p11e.PinInvalid,
    p11e.PinLenRange,
    p11e.PinLocked,
    p11e.PinExpired,
    p11e.UserPinNotInitialized,  # (after the start-up retries)
)


class _Transient(KekError):
    """A start-up failure that a fresh view of the token may not have (see ``_startup``)."""


class _LoggedOut(KekError):
    """A session or login the token no longer has (token restarted, connection lost)."""


def _hsm_error(what: str, e: BaseException) -> KekError:
    # Only the exception's type: python-pkcs11 messages carry nothing secret today, but
    # the type is all an operator needs and no future message can leak through it.
    return KekError("broker.kek.hsm_error", f"{what}: {type(e).__name__}")


_T = TypeVar("_T")
#: Start-up calls retried on transient failures: SoftHSM's file store, read by a process
#: while another process writes the token (a replica creating the KEK object at the same
#: moment), answers CKR_GENERAL_ERROR, lists the token as absent or says its user PIN is
#: not initialized. Bounded (about a second in all); wrap and unwrap are never retried.
_STARTUP_TRIES = 6
_TRANSIENT = (p11e.GeneralError, p11e.UserPinNotInitialized)
#: While looking for the KEK object, also an object another creator just destroyed.
_TRANSIENT_FIND = (p11e.GeneralError, p11e.ObjectHandleInvalid)


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0.02, 0.1) * (attempt + 1))


def _startup(fn: Callable[[], _T]) -> _T:
    for attempt in range(_STARTUP_TRIES - 1):
        try:
            return fn()
        except _TRANSIENT:
            _pause(attempt)
    return fn()


def read_pin(path: str) -> str:
    """The PIN in ``path`` (one trailing newline dropped). A file others can read is
    refused, as a KEK file is (group may read it: a service group is common)."""
    try:
        # O_NONBLOCK: a FIFO in the PIN file's place must not hang the start (the type is
        # checked on the open descriptor below).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise KekError(
            "broker.kek.pin_unreadable", f"cannot read the PIN file {path}: {e.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KekError("broker.kek.pin_unreadable", f"PIN file {path} is not a regular file")
        if st.st_mode & stat.S_IRWXO:
            raise KekError(
                "broker.kek.unsafe_permissions",
                f"PIN file {path} is accessible by others (mode {stat.S_IMODE(st.st_mode):o});"
                " chmod 600 (or 640) it",
            )
        data = f.read(MAX_PIN_BYTES + 1)
    if len(data) > MAX_PIN_BYTES:
        raise KekError(
            "broker.kek.pin_unreadable", f"PIN file {path} exceeds {MAX_PIN_BYTES} bytes"
        )
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        pin = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KekError("broker.kek.pin_unreadable", f"PIN file {path} is not UTF-8") from None
    if not pin:
        raise KekError("broker.kek.pin_unreadable", f"PIN file {path} is empty")
    return pin


@dataclass
class _Login:
    """The user login of one token in this process. PKCS#11 login state belongs to the
    application, not the session (v2.40 base §5.6, C_Login): a second C_Login fails with
    CKR_USER_ALREADY_LOGGED_IN, and closing the last session logs out. So each token is
    logged in once, through an anchor session kept open while a provider uses it."""

    anchor: Any
    pin_digest: bytes
    refs: int


_logins: dict[tuple[str, bytes], _Login] = {}
_logins_lock = threading.Lock()
_module_locks: dict[str, threading.RLock] = {}


def _module_lock(module: str) -> threading.RLock:
    """The lock every call into ``module`` holds (see the module docstring)."""
    with _logins_lock:
        return _module_locks.setdefault(module, threading.RLock())


def _login(module: str, token: Any, pin: str) -> None:
    key = (module, bytes(token.serial))
    digest = hashlib.sha256(pin.encode()).digest()
    with _module_lock(module), _logins_lock:
        cur = _logins.get(key)
        if cur is not None:
            if not hmac.compare_digest(cur.pin_digest, digest):
                # The token accepted another PIN in this process already; this one is not
                # checked by the token (no second login), so it is refused here.
                raise KekError(
                    "broker.kek.login_failed",
                    f"login to token {token.label!r} failed: not the PIN it is logged in with",
                )
            cur.refs += 1
            return
        try:
            anchor = _startup(lambda: token.open(rw=True, user_pin=pin))
        except _PIN_ERRORS as e:
            raise (_Transient if isinstance(e, _TRANSIENT) else KekError)(
                "broker.kek.login_failed",
                f"login to token {token.label!r} failed ({type(e).__name__})",
            ) from None
        except p11e.UserAlreadyLoggedIn:
            # Logged in by other code in this process: the session is, too.
            anchor = token.open(rw=True)
        except p11e.PKCS11Error as e:
            raise _hsm_error(f"opening a session on token {token.label!r}", e) from None
        _logins[key] = _Login(anchor, digest, 1)


def _relogin(module: str, token: Any, pin: str) -> None:
    """Log in again after the token dropped this process's sessions (and so its login,
    PKCS#11 v2.40 base §5.6): a new anchor session replaces the old one."""
    key = (module, bytes(token.serial))
    with _module_lock(module), _logins_lock:
        cur = _logins.get(key)
        try:
            anchor = token.open(rw=True, user_pin=pin)
        except p11e.UserAlreadyLoggedIn:
            return  # still (or again) logged in
        except _PIN_ERRORS as e:
            raise KekError(
                "broker.kek.login_failed",
                f"login to token {token.label!r} failed ({type(e).__name__})",
            ) from None
        except p11e.PKCS11Error as e:
            raise _hsm_error(f"logging in to token {token.label!r} again", e) from None
        if cur is None:
            _logins[key] = _Login(anchor, hashlib.sha256(pin.encode()).digest(), 1)
            return
        old, cur.anchor = cur.anchor, anchor
        with contextlib.suppress(p11e.PKCS11Error):
            old.close()


def _logout(module: str, token: Any) -> None:
    key = (module, bytes(token.serial))
    with _module_lock(module), _logins_lock:
        cur = _logins.get(key)
        if cur is None:
            return
        cur.refs -= 1
        if cur.refs == 0:
            del _logins[key]
            with contextlib.suppress(p11e.PKCS11Error):
                cur.anchor.close()


def _str(v: Any) -> str:
    return (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).rstrip(" \x00")


class Pkcs11Provider(KekProvider):
    """The KEK a PKCS#11 URI names (``pkcs11:token=…;object=…?module-path=…&pin-source=…``)."""

    def __init__(
        self, uri: str | Pkcs11Uri, *, create: bool = True, pool_size: int = POOL_SIZE
    ) -> None:
        self.uri = uri if isinstance(uri, Pkcs11Uri) else parse_pkcs11_uri(uri)
        u = self.uri
        if u.object is None:
            raise KekError("broker.kek.uri_invalid", "the KEK URI needs object=<label>")
        if u.type not in (None, "secret-key"):
            raise KekError("broker.kek.uri_invalid", "the KEK is a secret-key object (type=)")
        if u.pin_source is None:
            raise KekError(
                "broker.kek.uri_invalid",
                "the KEK URI needs pin-source=file:/path (the KEK is a private object)",
            )
        self._module = u.module()
        self._mlock = _module_lock(self._module)
        if not os.path.isfile(self._module):
            raise KekError("broker.kek.module_unavailable", f"no PKCS#11 module at {self._module}")
        pin = read_pin(u.pin_source)
        for attempt in range(_STARTUP_TRIES):
            try:
                with self._mlock:
                    self._lib = self._load(self._module)
                    self._token = self._select_token()
                _login(self._module, self._token, pin)
                break
            except _Transient as e:
                # SoftHSM keeps the broken view of a token it read while another process
                # wrote it until the module is initialized again; that is only safe while
                # nothing else in this process uses the module.
                with self._mlock, _logins_lock:
                    alone = not any(m == self._module for m, _ in _logins)
                    if attempt == _STARTUP_TRIES - 1 or not alone:
                        raise KekError(e.code, e.message) from None
                    with contextlib.suppress(p11e.PKCS11Error):
                        self._lib.reinitialize()
                _pause(attempt)
        # Kept for logging in again when the token drops the sessions (never shown).
        self._pin = pin
        self._label = u.object
        self._create = create
        self._max = max(1, pool_size)
        self._idle: queue.LifoQueue[tuple[Any, Any]] = queue.LifoQueue()
        self._open = 0
        self._lock = threading.Lock()
        self._closed = False
        try:
            with self._mlock:
                session, key = self._new_session(first=True)
        except BaseException:
            _logout(self._module, self._token)
            raise
        self._open = 1
        self._id = self._kek_id(key)
        self._idle.put((session, key))
        log.info("KEK in PKCS#11 token %r, object %r (%s)", self._token.label, u.object, self._id)

    # -- module and token -----------------------------------------------------------
    def _load(self, module: str) -> Any:
        if not os.path.isfile(module):
            raise KekError("broker.kek.module_unavailable", f"no PKCS#11 module at {module}")
        try:
            lib = pkcs11.lib(module)
        except (p11e.PKCS11Error, RuntimeError, OSError) as e:
            raise KekError(
                "broker.kek.module_unavailable",
                f"cannot load the PKCS#11 module {module} ({type(e).__name__})",
            ) from None
        u = self.uri
        checks = (
            ("library-manufacturer", u.library_manufacturer, _str(lib.manufacturer_id)),
            ("library-description", u.library_description, _str(lib.library_description)),
        )
        for name, want, have in checks:
            if want is not None and want != have:
                raise KekError(
                    "broker.kek.token_not_found",
                    f"module {module} is {name} {have!r}, the URI asks for {want!r}",
                )
        if u.library_version is not None:
            major, minor = lib.library_version
            want_major, _, want_minor = u.library_version.partition(".")
            if int(want_major) != major or int(want_minor or "0") != minor:
                raise KekError(
                    "broker.kek.token_not_found",
                    f"module {module} is version {major}.{minor}, the URI asks for "
                    f"{u.library_version}",
                )
        return lib

    def _select_token(self) -> Any:
        u = self.uri
        tokens: list[Any] = []
        for attempt in range(_STARTUP_TRIES):
            try:
                tokens = _startup(
                    lambda: list(
                        self._lib.get_tokens(
                            token_label=u.token,
                            token_serial=u.serial.encode() if u.serial is not None else None,
                        )
                    )
                )
            except _TRANSIENT as e:
                raise _Transient(
                    "broker.kek.hsm_error", f"listing the tokens: {type(e).__name__}"
                ) from None
            except p11e.PKCS11Error as e:
                raise _hsm_error("listing the tokens", e) from None
            tokens = [
                t
                for t in tokens
                if (u.manufacturer is None or _str(t.manufacturer_id) == u.manufacturer)
                and (u.model is None or _str(t.model) == u.model)
            ]
            if tokens:
                break
            if attempt < _STARTUP_TRIES - 1:
                _pause(attempt)
        if not tokens:
            raise _Transient("broker.kek.token_not_found", f"no token matches {u.display()}")
        if len(tokens) > 1:
            raise KekError(
                "broker.kek.ambiguous",
                f"{len(tokens)} tokens match {u.display()}: add token= or serial=",
            )
        return tokens[0]

    # -- the key object -------------------------------------------------------------
    def _template(self) -> dict[Attribute, Any]:
        t: dict[Attribute, Any] = {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.LABEL: self._label,
        }
        if self.uri.id is not None:
            t[Attribute.ID] = self.uri.id
        return t

    def _find(self, session: Any) -> list[Any]:
        return list(session.get_objects(self._template()))

    def _generate(self, session: Any) -> Any:
        return session.generate_key(
            KeyType.AES,
            256,
            id=self.uri.id if self.uri.id is not None else os.urandom(16),
            label=self._label,
            store=True,
            template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.WRAP: False,
                Attribute.UNWRAP: False,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
                Attribute.DERIVE: False,
            },
        )

    def _find_or_create(self, session: Any) -> Any:
        """The one key object with the URI's label (and id).

        PKCS#11 has no atomic create-if-absent, so replicas starting together may each
        create one. Each creator looks again after creating and keeps its object only if
        it is the only one; otherwise it destroys its own (it has wrapped nothing) and
        starts over after a random pause: of two creators at most one sees only its own
        object (the later creation is visible to the later search). A process that finds
        one object looks again after ``_SETTLE`` seconds and takes it only if it is still
        the only one, so it does not take an object its creator is about to withdraw.
        Several objects seen on every look are duplicates, not a race: refused."""
        crowded = 0
        for attempt in range(_CREATE_TRIES):
            found = _startup(lambda: self._find(session))
            if len(found) == 1:
                time.sleep(_SETTLE)
                again = _startup(lambda: self._find(session))
                if len(again) == 1 and again[0][Attribute.ID] == found[0][Attribute.ID]:
                    return again[0]
            elif len(found) > 1:
                crowded += 1
                if crowded >= _CROWDED_LOOKS:
                    raise KekError(
                        "broker.kek.ambiguous",
                        f"{len(found)} secret keys labelled {self._label!r} in token "
                        f"{self._token.label!r}: give the URI an id= (CKA_ID) or remove "
                        "the extra",
                    )
            elif not self._create:
                raise KekError(
                    "broker.kek.missing",
                    f"no KEK object {self._label!r} in token {self._token.label!r} "
                    "(an unwrap-only KEK must exist)",
                )
            else:
                mine = _startup(lambda: self._generate(session))
                found = _startup(lambda: self._find(session))
                if len(found) == 1:
                    log.info("created KEK object %r in token %r", self._label, self._token.label)
                    continue  # confirmed by the settled look at the top
                _startup(mine.destroy)
            _pause(attempt)
        raise KekError(
            "broker.kek.ambiguous",
            f"could not settle on one KEK object {self._label!r} in token "
            f"{self._token.label!r} (concurrent creators)",
        )

    def _check_key(self, key: Any) -> None:
        attrs = {
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE_LEN: 32,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
        }
        for attr, want in attrs.items():
            try:
                have = key[attr]
            except p11e.PKCS11Error:
                have = None
            if have != want:
                raise KekError(
                    "broker.kek.unsafe_key",
                    f"KEK object {self._label!r} has {attr.name}={have!r}, needs {want!r}: "
                    "it must be an AES-256 key that cannot leave the token",
                )

    def _kek_id(self, key: Any) -> str:
        cka_id = bytes(key[Attribute.ID] or b"")
        h = hashlib.sha256(
            b"sealgate pkcs11 kek id\x00"
            + bytes(self._token.serial).rstrip(b" \x00")
            + b"\x00"
            + self._label.encode()
            + b"\x00"
            + cka_id
        )
        return "pkcs11:" + h.hexdigest()[:16]

    # -- sessions -------------------------------------------------------------------
    def _new_session(self, first: bool = False) -> tuple[Any, Any]:
        try:
            session = _startup(lambda: self._token.open(rw=True))
        except _BROKEN as e:
            raise _LoggedOut("broker.kek.hsm_error", type(e).__name__) from None
        except p11e.PKCS11Error as e:
            raise _hsm_error(f"opening a session on token {self._token.label!r}", e) from None
        try:
            if first:
                for attempt in range(_STARTUP_TRIES):
                    try:
                        key = self._find_or_create(session)
                        self._check_key(key)
                        self._kek_id(key)
                        break
                    except _TRANSIENT_FIND:
                        if attempt == _STARTUP_TRIES - 1:
                            raise
                        _pause(attempt)
            else:
                found = self._find(session)
                if not found:
                    # A private object is invisible to a session that is not logged in.
                    raise _LoggedOut("broker.kek.hsm_error", "the KEK object is not visible")
                if len(found) != 1:
                    raise KekError(
                        "broker.kek.ambiguous",
                        f"{len(found)} KEK objects {self._label!r} in token "
                        f"{self._token.label!r} (one expected)",
                    )
                key = found[0]
                if self._kek_id(key) != self._id:
                    raise KekError(
                        "broker.kek.unsafe_key", "the KEK object changed under a running service"
                    )
        except p11e.PKCS11Error as e:
            with contextlib.suppress(p11e.PKCS11Error):
                session.close()
            if not first and isinstance(e, _BROKEN):
                raise _LoggedOut("broker.kek.hsm_error", type(e).__name__) from None
            raise _hsm_error(f"finding the KEK in token {self._token.label!r}", e) from None
        except BaseException:
            with contextlib.suppress(p11e.PKCS11Error):
                session.close()
            raise
        return session, key

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """A session's handle to the key, used by this thread alone."""
        if self._closed:
            raise KekError("broker.kek.hsm_error", "the PKCS#11 provider is closed")
        with self._mlock:
            yield from self._use_session()

    def _use_session(self) -> Iterator[Any]:
        try:
            item = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._open < self._max
                if grow:
                    self._open += 1
            if grow:
                try:
                    item = self._new_session()
                except BaseException:
                    with self._lock:
                        self._open -= 1
                    raise
            else:
                try:
                    item = self._idle.get(timeout=_POOL_WAIT)
                except queue.Empty:
                    raise KekError(
                        "broker.kek.hsm_error", f"no PKCS#11 session free for {_POOL_WAIT:.0f}s"
                    ) from None
        broken = False
        try:
            yield item[1]
        except _BROKEN:
            broken = True
            raise
        finally:
            if broken or self._closed:
                with contextlib.suppress(p11e.PKCS11Error):
                    item[0].close()
                with self._lock:
                    self._open -= 1
            else:
                self._idle.put(item)

    # -- KekProvider ----------------------------------------------------------------
    @property
    def kek_id(self) -> str:
        return self._id

    @property
    def token_label(self) -> str:
        return str(self._token.label)

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        iv = os.urandom(_IV_SIZE)
        param = GCMParams(iv, _AAD_PREFIX + aad, _TAG_BITS)
        try:
            ct = self._call(
                "wrapping in the token",
                lambda key: key.encrypt(
                    plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=param
                ),
            )
        except p11e.PKCS11Error as e:
            raise _hsm_error("wrapping in the token", e) from None
        return _MAGIC + iv + bytes(ct)

    def _call(self, what: str, op: Callable[[Any], Any]) -> Any:
        """``op(key)`` on a pooled session; once more after logging in again when the
        token has dropped the session or the login."""
        for attempt in range(2):
            try:
                with self._session() as key:
                    return op(key)
            except (*_BROKEN, _LoggedOut) as e:
                if attempt == 1:
                    raise _hsm_error(what, e) from None
                log.warning("PKCS#11 session lost (%s); logging in again", type(e).__name__)
                _relogin(self._module, self._token, self._pin)
        raise AssertionError("unreachable")

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if not blob.startswith(_MAGIC):
            raise KekError("broker.kek.unwrap_failed", "not a blob of a PKCS#11 KEK")
        if len(blob) < len(_MAGIC) + _IV_SIZE + _TAG_BITS // 8:
            raise KekError("broker.kek.unwrap_failed", "wrapped blob too short")
        iv = blob[len(_MAGIC) : len(_MAGIC) + _IV_SIZE]
        param = GCMParams(iv, _AAD_PREFIX + aad, _TAG_BITS)
        body = blob[len(_MAGIC) + _IV_SIZE :]
        try:
            pt = self._call(
                "unwrapping in the token",
                lambda key: key.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=param),
            )
        except p11e.PKCS11Error:
            # A failed tag check: CKR_ENCRYPTED_DATA_INVALID by the standard, and SoftHSM
            # answers CKR_GENERAL_ERROR.
            raise KekError(
                "broker.kek.unwrap_failed", "wrapped blob does not open under this KEK"
            ) from None
        return bytes(pt)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._mlock:
            while True:
                try:
                    session, _ = self._idle.get_nowait()
                except queue.Empty:
                    break
                with contextlib.suppress(p11e.PKCS11Error):
                    session.close()
        _logout(self._module, self._token)
