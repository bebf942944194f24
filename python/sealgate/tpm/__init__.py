"""TPM 2.0 evidence facade: input detection, PCR files, and the quote verdict.

Parsing and verification run in Rust (``sealgate._core``); this module turns files and
arguments into calls and the outcome into the CLI/JSON claim set.
"""

from __future__ import annotations

import struct
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sealgate import _core
from sealgate.documents import load_document
from sealgate.errors import ParseError, UsageError, VerificationError
from sealgate.result import VerifyResult

PcrMap = dict[str, dict[int, bytes]]
Selection = list[tuple[str, list[int]]]

#: Digest sizes of the banks sealgate handles.
BANK_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
#: Reset value of a PCR the event log never extends (PC Client PTP rev 1.05 §3.3.7.1:
#: PCRs 17-22 reset to all ones outside a dynamic launch; all others to zero).
DRTM_PCRS = range(17, 23)

# tpm2-tools' `tpm2_quote -o` file: the TSS2 in-memory structs written raw, host byte order
# (little-endian here). TPML_PCR_SELECTION = count u32 + 16 x TPMS_PCR_SELECTION
# (hash u16, sizeofSelect u8, pcrSelect[4], 1 pad byte); then a u32 count of TPML_DIGEST,
# each count u32 + 8 x TPM2B_DIGEST (size u16 + 64-byte buffer).
_T2T_SEL_LEN = 4 + 16 * 8
_T2T_DIGEST_LIST_LEN = 4 + 8 * 66
_T2T_MAX_LISTS = 64


def reset_value(bank: str, index: int) -> bytes:
    size = BANK_SIZES[bank]
    return (b"\xff" if index in DRTM_PCRS else b"\x00") * size


def parse_selection(text: str) -> Selection:
    """``sha256:0,1,2+sha1:0`` → ``[("sha256", [0, 1, 2]), ("sha1", [0])]``."""
    out: Selection = []
    for part in text.split("+"):
        bank, sep, idx = part.strip().partition(":")
        if not sep or bank not in BANK_SIZES:
            raise UsageError("cli.usage.bad_selection", f"bad PCR selection {part!r}")
        try:
            pcrs = sorted({int(i) for i in idx.split(",") if i.strip()})
        except ValueError:
            raise UsageError("cli.usage.bad_selection", f"bad PCR index in {part!r}") from None
        if not pcrs or any(i < 0 or i > 31 for i in pcrs):
            raise UsageError("cli.usage.bad_selection", f"PCR indices must be 0..31 in {part!r}")
        out.append((bank, pcrs))
    return out


def load_ak(data: bytes) -> _core.TpmPublic:
    """An AK from PEM or DER SubjectPublicKeyInfo, TPMT_PUBLIC or TPM2B_PUBLIC (detected)."""
    key: Any = None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise ParseError("tpm.format.invalid", f"AK PEM is not a public key: {e}") from None
    elif data[:1] == b"\x30":
        try:
            key = serialization.load_der_public_key(data)
        except ValueError:
            key = None  # Not DER after all; try TPM encodings below.
    if key is None:
        return _core.TpmPublic.parse(data)
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers()
        return _core.TpmPublic.from_rsa(
            n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"),
            n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"),
        )
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name)
        if curve is None:
            raise VerificationError("tpm.ak.unsupported_key", f"curve {key.curve.name}")
        size = key.curve.key_size // 8
        nums = key.public_numbers()
        return _core.TpmPublic.from_ecc(
            curve, nums.x.to_bytes(size, "big"), nums.y.to_bytes(size, "big")
        )
    raise VerificationError("tpm.ak.unsupported_key", f"{type(key).__name__} is not RSA or ECC")


def _parse_tpm2_tools_pcrs(data: bytes) -> PcrMap:
    if len(data) < _T2T_SEL_LEN + 4:
        raise ParseError("tpm.format.truncated", "tpm2-tools PCR file too short", "pcrs", 0)
    (count,) = struct.unpack_from("<I", data, 0)
    if count > 16:
        raise ParseError("tpm.format.too_large", f"{count} PCR banks", "pcrs.count", 0)
    order: list[tuple[str, int]] = []
    names = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
    for i in range(count):
        off = 4 + i * 8
        alg, size = struct.unpack_from("<HB", data, off)
        if alg not in names or size > 4:
            raise ParseError("tpm.format.invalid", f"bank 0x{alg:04x}", "pcrs.selection", off)
        bitmap = data[off + 3 : off + 3 + size]
        for byte_i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (1 << bit):
                    order.append((names[alg], byte_i * 8 + bit))
    (lists,) = struct.unpack_from("<I", data, _T2T_SEL_LEN)
    if lists > _T2T_MAX_LISTS:
        raise ParseError("tpm.format.too_large", f"{lists} digest lists", "pcrs.count", 0)
    if len(data) != _T2T_SEL_LEN + 4 + lists * _T2T_DIGEST_LIST_LEN:
        raise ParseError(
            "tpm.format.invalid", "tpm2-tools PCR file has the wrong size", "pcrs", len(data)
        )
    digests: list[bytes] = []
    for j in range(lists):
        off = _T2T_SEL_LEN + 4 + j * _T2T_DIGEST_LIST_LEN
        (n,) = struct.unpack_from("<I", data, off)
        if n > 8:
            raise ParseError("tpm.format.too_large", f"{n} digests", "pcrs.digests", off)
        for k in range(n):
            doff = off + 4 + k * 66
            (size,) = struct.unpack_from("<H", data, doff)
            if size > 64:
                raise ParseError("tpm.format.too_large", f"digest of {size}", "pcrs.digest", doff)
            digests.append(data[doff + 2 : doff + 2 + size])
    if len(digests) != len(order):
        raise ParseError(
            "tpm.format.invalid",
            f"{len(order)} PCRs selected but {len(digests)} values present",
            "pcrs",
            0,
        )
    out: PcrMap = {}
    for (bank, idx), value in zip(order, digests, strict=True):
        out.setdefault(bank, {})[idx] = value
    return out


def load_pcrs(data: bytes) -> PcrMap:
    """PCR values from sealgate's JSON (``{"sha256": {"0": "hex"}}``) or ``tpm2_quote -o``."""
    if data.lstrip()[:1] == b"{":
        doc = load_document(
            data, code="cli.input.bad_json", what="PCR file", yaml_ok=False, max_bytes=1 << 20
        )
        if not isinstance(doc, dict):
            raise UsageError("cli.input.bad_json", "PCR JSON must be an object")
        out: PcrMap = {}
        for bank, values in doc.items():
            if bank not in BANK_SIZES:
                continue  # Banks sealgate does not hash (and non-bank keys) are ignored.
            if not isinstance(values, dict):
                raise UsageError("cli.input.bad_json", f"bank {bank} must map index to hex")
            for idx, hexval in values.items():
                # A TPMS_PCR_SELECT bitmap names PCRs 0..31 (TPM 2.0 Part 2 §10.6.1, at most
                # 4 select bytes here); anything else cannot be in a quote, and would not fit
                # the u32 index the verifier takes.
                if not (idx.isascii() and idx.isdigit() and len(idx) <= 2 and int(idx) <= 31):
                    raise UsageError(
                        "cli.input.bad_json",
                        f"PCR index {idx[:20]!r} in bank {bank} is not 0..31",
                    )
                try:
                    value = bytes.fromhex(hexval) if isinstance(hexval, str) else None
                except ValueError:
                    value = None
                if value is None:
                    raise UsageError(
                        "cli.input.bad_json",
                        f"PCR {bank}:{idx} value {str(hexval)[:80]!r} is not hex",
                    )
                out.setdefault(bank, {})[int(idx)] = value
        return out
    return _parse_tpm2_tools_pcrs(data)


def pcrs_to_json(pcrs: PcrMap) -> dict[str, dict[str, str]]:
    return {
        bank: {str(i): v.hex() for i, v in sorted(values.items())} for bank, values in pcrs.items()
    }


def replay_eventlog(res: VerifyResult, eventlog: bytes) -> PcrMap | None:
    """Replay an event log into PCR values; its summary goes into ``res.claims["eventlog"]``,
    a log that does not parse or replay into ``res.errors`` (then None)."""
    replayed = parse_and_replay(res, eventlog)
    return None if replayed is None else replayed[0]


def parse_and_replay(res: VerifyResult, eventlog: bytes) -> tuple[PcrMap, _core.EventLog] | None:
    """``replay_eventlog``, also returning the parsed log (for its events)."""
    try:
        log = _core.parse_event_log(eventlog)
        replayed = log.replay()
    except (ParseError, VerificationError) as e:
        res.fail_from(e)
        return None
    res.claims["eventlog"] = {
        "format": log.format,
        "events": len(log),
        "banks": log.banks,
        "startup_locality": log.startup_locality,
    }
    return replayed, log


def pcrs_from_replay(quote: bytes, replayed: PcrMap) -> tuple[PcrMap, _core.TpmQuote]:
    """The quoted PCRs' values from a replay: PCRs the log never touches hold their reset
    value. ``ParseError`` when the quote does not parse."""
    parsed = _core.TpmQuote.parse(quote)
    pcrs: PcrMap = {}
    for bank, idxs in parsed.pcr_selection:
        for i in idxs:
            pcrs.setdefault(bank, {})[i] = replayed.get(bank, {}).get(i, reset_value(bank, i))
    return pcrs, parsed


def verify_quote(
    ak: bytes | _core.TpmPublic,
    quote: bytes,
    signature: bytes,
    pcrs: PcrMap | None = None,
    eventlog: bytes | None = None,
    nonce: bytes | None = None,
    min_selection: Selection | None = None,
) -> VerifyResult:
    """Verify a quote and return every failure with the claims that could be read."""
    res = VerifyResult(platform="tpm")
    try:
        key = ak if isinstance(ak, _core.TpmPublic) else load_ak(ak)
    except (ParseError, VerificationError) as e:
        res.fail_from(e)
        return res
    replay = parse_and_replay(res, eventlog) if eventlog is not None else None
    replayed, log = replay if replay is not None else (None, None)
    parsed: _core.TpmQuote | None = None
    if pcrs is None:
        pcrs = {}
        if replayed is not None:
            try:
                pcrs, parsed = pcrs_from_replay(quote, replayed)
            except ParseError as e:
                res.fail_from(e)
                return res
    out: _core.TpmQuoteResult | None
    try:
        out = _core.verify_tpm_quote(key, quote, signature, pcrs, nonce, min_selection)
    except ParseError as e:
        out = None
        # The quote itself, or only its signature, did not parse: the claims still come
        # from the quote when it parses (the verifier's own parse is used otherwise).
        if parsed is None:
            try:
                parsed = _core.TpmQuote.parse(quote)
            except ParseError as qe:
                res.fail_from(qe)
                return res
        res.fail_from(e)
    # Claims from the quote's own fields (one dict built in Rust): the verified quote's,
    # else the separately parsed one's.
    if out is not None:
        res.claims.update(out.claims())
        res.errors.extend(out.failures)
    else:
        claims = parsed.claims() if parsed else {}
        claims["ak_name"] = key.name.hex() if key.name is not None else None
        res.claims.update(claims)
    if replayed is not None and log is not None and out is not None:
        mismatch = _core.check_pcr_replay(replayed, out.pcrs)
        if mismatch is not None:
            failure, pcrs_differing = mismatch
            res.errors.append(failure)
            res.claims["replay_mismatch_pcrs"] = pcrs_differing
        else:
            # The log replays to the quoted PCRs: its model events are attested (an attested
            # model binding looks for the model's root digest here).
            from sealgate.protocol.model_binding import tpm_model_digests

            # The quote verified, so it parses; only this (event log) path pays the parse.
            q = parsed if parsed is not None else _core.TpmQuote.parse(quote)
            found = tpm_model_digests(log.events, dict(q.pcr_selection))
            if found:
                res.claims["model_digests"] = found
    return res
