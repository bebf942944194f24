"""The PKCS#11 KEK provider against SoftHSM2, and the RFC 7512 URI parser."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11e
from sealgate.broker.kek import KekError, KekRing, LocalKeyFileProvider, open_kek
from sealgate.broker.pkcs11 import Pkcs11Provider
from sealgate.broker.pkcs11uri import Pkcs11Uri, parse_pkcs11_uri
from sealgate.testing.softhsm import USER_PIN, SoftHsm

REPO = Path(__file__).resolve().parents[2]


def _label() -> str:
    return "kek-" + uuid.uuid4().hex[:12]


# -- the URI parser ---------------------------------------------------------------------


def test_uri_parses_path_and_query_attributes() -> None:
    u = parse_pkcs11_uri(
        "pkcs11:token=my%20token;object=kek;id=%01%02%ff;type=secret-key;"
        "manufacturer=SoftHSM%20project;serial=abc;model=SoftHSM%20v2;library-version=2.6"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sealgate/pin"
    )
    assert u.token == "my token" and u.object == "kek" and u.id == b"\x01\x02\xff"
    assert (u.type, u.manufacturer, u.serial, u.model) == (
        "secret-key",
        "SoftHSM project",
        "abc",
        "SoftHSM v2",
    )
    assert u.library_version == "2.6"
    assert u.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert u.pin_source == "/etc/sealgate/pin"
    assert parse_pkcs11_uri(u.display()) == u
    # Scheme case-insensitive (RFC 3986 §3.1), file:/// and bare paths for pin-source.
    assert parse_pkcs11_uri("PKCS11:object=a?pin-source=file:///p").pin_source == "/p"
    assert parse_pkcs11_uri("pkcs11:object=a?pin-source=/p").pin_source == "/p"
    assert parse_pkcs11_uri("pkcs11:") == Pkcs11Uri()
    # UTF-8 labels, percent-encoded.
    assert parse_pkcs11_uri("pkcs11:object=cl%C3%A9").object == "clé"


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("pkcs11:object=k?pin-value=1234", "broker.kek.pin_in_uri"),
        ("pkcs11:object=k?pin-source=|/bin/echo%201234", "broker.kek.pin_source_invalid"),
        ("pkcs11:object=k?pin-source=relative/pin", "broker.kek.pin_source_invalid"),
        ("pkcs11:object=k?pin-source=http://x/pin", "broker.kek.pin_source_invalid"),
        ("pkcs11:object=k?pin-source=file://host/pin", "broker.kek.pin_source_invalid"),
        ("pkcs11:object=k;slot-id=3", "broker.kek.uri_invalid"),
        ("pkcs11:object=k;x-vendor=1", "broker.kek.uri_invalid"),
        ("pkcs11:object=k?x-vendor=1", "broker.kek.uri_invalid"),
        ("pkcs11:object=a;object=b", "broker.kek.uri_invalid"),
        ("pkcs11:object=a?module-path=/a&module-path=/b", "broker.kek.uri_invalid"),
        ("pkcs11:object=a%2", "broker.kek.uri_invalid"),
        ("pkcs11:object=a%zz", "broker.kek.uri_invalid"),
        ("pkcs11:object=a%ff", "broker.kek.uri_invalid"),  # not UTF-8
        ("pkcs11:object=a%0a", "broker.kek.uri_invalid"),  # control character
        ("pkcs11:object=a#frag", "broker.kek.uri_invalid"),
        ("pkcs11:object=a/b", "broker.kek.uri_invalid"),  # "/" must be encoded in the path
        ("pkcs11:object=a;", "broker.kek.uri_invalid"),
        ("pkcs11:object", "broker.kek.uri_invalid"),
        ("pkcs11:object=", "broker.kek.uri_invalid"),
        ("pkcs11:token=" + "t" * 33, "broker.kek.uri_invalid"),
        ("pkcs11:type=secret", "broker.kek.uri_invalid"),
        ("pkcs11:library-version=two", "broker.kek.uri_invalid"),
        ("pkcs11:object=a?module-path=lib.so", "broker.kek.uri_invalid"),
        ("pkcs11:object=a?module-name=../evil", "broker.kek.uri_invalid"),
        ("pkcs12:object=a", "broker.kek.uri_invalid"),
        ("pkcs11:object=" + "a" * 5000, "broker.kek.uri_invalid"),
    ],
)
def test_uri_refusals(uri: str, code: str) -> None:
    with pytest.raises(KekError) as e:
        parse_pkcs11_uri(uri)
    assert e.value.code == code
    assert "1234" not in str(e.value)


def test_kek_uri_schemes() -> None:
    for bad in ("kms://x", "file://host/k", "file:relative", "/plain/path"):
        with pytest.raises(KekError) as e:
            open_kek(bad)
        assert e.value.code == "broker.kek.uri_invalid", bad
    with pytest.raises(KekError) as e:
        open_kek("pkcs11:object=k?module-path=/nonexistent/module.so&pin-source=file:/p")
    assert e.value.code == "broker.kek.module_unavailable"
    with pytest.raises(KekError) as e:
        open_kek("pkcs11:object=k?module-path=/usr/lib/softhsm/libsofthsm2.so")
    assert e.value.code == "broker.kek.uri_invalid"  # no pin-source: no login


# -- the provider against SoftHSM2 ------------------------------------------------------


def _session(hsm: SoftHsm, label: str = "sealgate") -> pkcs11.Session:
    tok = pkcs11.lib(hsm.module).get_token(token_label=label)
    return tok.open(rw=True)


def test_wrap_unwrap_aad_and_tampering(hsm: SoftHsm, tmp_path: Path) -> None:
    p = Pkcs11Provider(hsm.uri("sealgate", _label()))
    try:
        assert p.kek_id.startswith("pkcs11:") and len(p.kek_id) == len("pkcs11:") + 16
        secret = os.urandom(32)
        blob = p.wrap(secret, b"aad-1")
        assert blob[:4] == b"SGH1" and len(blob) == 4 + 12 + 32 + 16
        assert secret not in blob
        assert p.unwrap(blob, b"aad-1") == secret
        assert p.wrap(secret, b"aad-1") != blob  # a fresh IV each time
        for bad_blob, aad in [
            (blob, b"aad-2"),
            (blob[:20] + bytes([blob[20] ^ 1]) + blob[21:], b"aad-1"),  # ciphertext
            (blob[:5] + bytes([blob[5] ^ 1]) + blob[6:], b"aad-1"),  # IV
            (blob[:-1] + bytes([blob[-1] ^ 1]), b"aad-1"),  # tag
            (blob[:-1], b"aad-1"),
            (blob[:20], b"aad-1"),
            (b"SGH2" + blob[4:], b"aad-1"),
        ]:
            with pytest.raises(KekError) as e:
                p.unwrap(bad_blob, aad)
            assert e.value.code == "broker.kek.unwrap_failed"
        # Never fed to the wrong KEK: a file blob does not open here, nor ours there.
        f = LocalKeyFileProvider(tmp_path / "kek.key")
        with pytest.raises(KekError) as e:
            p.unwrap(f.wrap(secret, b"aad-1"), b"aad-1")
        assert e.value.code == "broker.kek.unwrap_failed"
        with pytest.raises(KekError) as e:
            f.unwrap(blob, b"aad-1")
        assert e.value.code == "broker.kek.unwrap_failed"
    finally:
        p.close()
    with pytest.raises(KekError):
        p.wrap(b"x", b"")


def test_key_is_sensitive_non_extractable_and_found_again(hsm: SoftHsm) -> None:
    label = _label()
    a = Pkcs11Provider(hsm.uri("sealgate", label))
    b = Pkcs11Provider(hsm.uri("sealgate", label))  # another replica, same token object
    try:
        assert a.kek_id == b.kek_id
        blob = a.wrap(b"model key", b"aad")
        assert b.unwrap(blob, b"aad") == b"model key"
        with _session(hsm) as s:
            keys = list(
                s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
            )
            assert len(keys) == 1
            k = keys[0]
            assert k[Attribute.SENSITIVE] is True and k[Attribute.EXTRACTABLE] is False
            assert k[Attribute.NEVER_EXTRACTABLE] is True and k[Attribute.TOKEN] is True
            assert k[Attribute.VALUE_LEN] == 32 and k[Attribute.KEY_TYPE] == KeyType.AES
            with pytest.raises(p11e.AttributeSensitive):
                k[Attribute.VALUE]
    finally:
        a.close()
        b.close()
    # A KEK the URI names by its CKA_ID as well.
    c = Pkcs11Provider(hsm.uri("sealgate", label))
    c.close()
    # Unwrap-only providers never create: a missing object is an error.
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("sealgate", _label()), create=False)
    assert e.value.code == "broker.kek.missing"


def test_ambiguous_and_unsafe_objects_are_refused(hsm: SoftHsm) -> None:
    dup, weak = _label(), _label()
    with _session(hsm) as s:
        # Logged in by an earlier provider in this process? Log in for this session.
        p = Pkcs11Provider(hsm.uri("sealgate", _label()))
        try:
            for i in range(2):
                s.generate_key(KeyType.AES, 256, label=dup, id=bytes([i]), store=True)
            s.generate_key(
                KeyType.AES,
                256,
                label=weak,
                store=True,
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )
        finally:
            p.close()
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("sealgate", dup))
    assert e.value.code == "broker.kek.ambiguous"
    # The CKA_ID in the URI picks one of them.
    one = Pkcs11Provider(hsm.uri("sealgate", dup, extra=";id=%01"))
    one.close()
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("sealgate", weak))
    assert e.value.code == "broker.kek.unsafe_key"
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("no-such-token", _label()))
    assert e.value.code == "broker.kek.token_not_found"


def test_wrong_pin_has_a_code_and_never_shows_the_pin(
    hsm: SoftHsm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-pin-" + uuid.uuid4().hex[:8]
    bad = hsm.write_pin("wrong.pin", wrong)
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("pin-test", _label(), pin_file=bad))
    assert e.value.code == "broker.kek.login_failed"
    # A token this process is logged in to already: a different PIN is refused too.
    good = Pkcs11Provider(hsm.uri("sealgate", _label()))
    try:
        with pytest.raises(KekError) as e2:
            Pkcs11Provider(hsm.uri("sealgate", _label(), pin_file=bad))
        assert e2.value.code == "broker.kek.login_failed"
    finally:
        good.close()
    for text in (str(e.value), str(e2.value), caplog.text):
        assert wrong not in text and USER_PIN not in text
    # A PIN file others can read is refused; so is a missing one (named, not shown).
    os.chmod(bad, 0o604)
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("pin-test", _label(), pin_file=bad))
    assert e.value.code == "broker.kek.unsafe_permissions" and wrong not in str(e.value)
    with pytest.raises(KekError) as e:
        Pkcs11Provider(hsm.uri("pin-test", _label(), pin_file=hsm.directory / "none"))
    assert e.value.code == "broker.kek.pin_unreadable"


def test_concurrent_threads_share_the_session_pool(hsm: SoftHsm) -> None:
    p = Pkcs11Provider(hsm.uri("sealgate", _label()), pool_size=3)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(100):
                aad = f"{i}/{j}".encode()
                secret = os.urandom(32)
                assert p.unwrap(p.wrap(secret, aad), aad) == secret
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    p.close()
    assert not errors and not any(t.is_alive() for t in threads)


_CHILD = """
import json, sys
from sealgate.broker.pkcs11 import Pkcs11Provider
p = Pkcs11Provider(sys.argv[1])
print(json.dumps({"kek_id": p.kek_id, "blob": p.wrap(b"from " + sys.argv[2].encode(), b"x").hex()}))
p.close()
"""


def test_other_processes_find_the_object_the_first_created(hsm: SoftHsm) -> None:
    """The first replica creates the KEK object; replicas started after it (here three at
    once, in their own processes) find that object and no other."""
    label = _label()
    uri = hsm.uri("sealgate", label)
    env = {**hsm.env(), "PYTHONPATH": str(REPO / "python")}
    first = subprocess.run(
        [sys.executable, "-c", _CHILD, uri, "0"], env=env, capture_output=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, uri, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(1, 4)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    docs = [json.loads(first.stdout), *(json.loads(o) for o, _ in outs)]
    assert len({d["kek_id"] for d in docs}) == 1
    here = Pkcs11Provider(uri, create=False)
    try:
        assert here.kek_id == docs[0]["kek_id"]
        for i, d in enumerate(docs):
            assert here.unwrap(bytes.fromhex(d["blob"]), b"x") == f"from {i}".encode()
        with _session(hsm) as s:
            found = list(
                s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
            )
        assert len(found) == 1
    finally:
        here.close()


def test_ring_picks_the_kek_the_record_names(hsm: SoftHsm, tmp_path: Path) -> None:
    f = LocalKeyFileProvider(tmp_path / "kek.key")
    p = Pkcs11Provider(hsm.uri("sealgate", _label()))
    try:
        ring = KekRing(p, [f])
        old = f.wrap(b"old", b"a")
        assert ring.unwrap(old, b"a", f.kek_id) == b"old"
        assert ring.unwrap(old, b"a", "") == b"old"  # recorded before kek ids were
        assert (
            ring.kek_id == p.kek_id and ring.unwrap(ring.wrap(b"n", b"a"), b"a", p.kek_id) == b"n"
        )
        with pytest.raises(KekError) as e:
            ring.unwrap(old, b"a", "file:0123456789abcdef")
        assert e.value.code == "broker.kek.unknown" and "kek_previous" in e.value.message
        with pytest.raises(KekError) as e:
            KekRing(p).unwrap(old, b"a", f.kek_id)
        assert e.value.code == "broker.kek.unknown"
    finally:
        p.close()


def test_replicas_racing_to_create_keep_one_object(hsm: SoftHsm) -> None:
    """Four processes start at once on a token without the object: each may create one,
    and they settle on a single object that all of them use (``_find_or_create``)."""
    label = _label()
    uri = hsm.uri("sealgate", label)
    env = {**hsm.env(), "PYTHONPATH": str(REPO / "python")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, uri, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    docs = [json.loads(o) for o, _ in outs]
    assert len({d["kek_id"] for d in docs}) == 1
    here = Pkcs11Provider(uri, create=False)
    try:
        for i, d in enumerate(docs):
            assert here.unwrap(bytes.fromhex(d["blob"]), b"x") == f"from {i}".encode()
        with _session(hsm) as s:
            found = list(
                s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
            )
        assert len(found) == 1
    finally:
        here.close()


def test_a_dropped_login_is_restored(hsm: SoftHsm, caplog: pytest.LogCaptureFixture) -> None:
    """The token drops every session of the process (an HSM restart, a lost connection),
    and with them the login (PKCS#11 v2.40 base §5.6): the next wrap logs in again."""
    from sealgate.broker import pkcs11 as p11

    caplog.set_level(logging.DEBUG)
    label = _label()
    p = Pkcs11Provider(hsm.uri("relogin", label))  # the only user of this token
    try:
        blob = p.wrap(b"before", b"a")
        # What the token's side of a restart looks like from here: every session gone.
        with p._mlock:
            while not p._idle.empty():
                p._idle.get_nowait()[0].close()
                p._open -= 1
            for (module, _), login in p11._logins.items():
                if module == p._module:
                    login.anchor.close()
        with _session(hsm, "relogin") as s:  # logged out: the private key is invisible
            assert not list(s.get_objects({Attribute.LABEL: label}))
        assert p.unwrap(blob, b"a") == b"before"
        assert p.unwrap(p.wrap(b"after", b"a"), b"a") == b"after"
        assert "logging in again" in caplog.text and USER_PIN not in caplog.text
    finally:
        p.close()


def test_a_fifo_as_pin_file_is_refused_without_hanging(tmp_path: Path) -> None:
    from sealgate.broker.pkcs11 import read_pin

    fifo = tmp_path / "pin"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KekError) as e:
        read_pin(str(fifo))
    assert e.value.code == "broker.kek.pin_unreadable"
