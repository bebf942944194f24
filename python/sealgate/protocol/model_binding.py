"""Attested model binding: where each platform's evidence commits to a model's root digest.

A policy with ``model.attested_binding: true`` releases the key only to a node whose
verified evidence names the registered model's OMS root digest (32 bytes):

- **TPM**: a measured event in PCR ``MODEL_PCR`` (12) of type ``EV_EVENT_TAG``
  (TCG PC Client Platform Firmware Profile v1.05, §10.4.1 event types, §10.4.2.1
  TCG_PCClientTaggedEvent): ``taggedEventID = MODEL_EVENT_ID``, ``taggedEventData =``
  the root digest. The event's digest in every bank must be that bank's hash of the event
  data (the whole TCG_PCClientTaggedEvent), so the data is what was extended; the event log
  must replay to the quoted PCRs and PCR 12 must be in the quote's selection, or the event
  proves nothing. PCRs 8-15 are the OS's (PFP §3.3.4.1); 12 is not extended by firmware,
  and ``sealgate node request-keys --model-signature ... --extend-model-pcr`` extends it
  (tpm2_pcrextend) and appends the event to the log it sends.
- **SEV-SNP**: ``HOST_DATA`` (32 bytes, set by the host when it launches the guest; AMD
  SEV-SNP ABI, SNP_LAUNCH_FINISH) equals the root digest.
- **TDX**: ``MRCONFIGID`` (48 bytes, set by the host at TD creation; Intel TDX Module ABI,
  TDH.MNG.INIT) is the root digest followed by 16 zero bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from typing import Any

#: PC Client PFP: PCRs 8-15 are for the static OS; 12 is otherwise unused by firmware.
MODEL_PCR = 12
#: EV_EVENT_TAG (PC Client PFP §10.4.1).
EV_EVENT_TAG = 0x00000006
#: taggedEventID of a sealgate model measurement ("SGMD").
MODEL_EVENT_ID = 0x53474D44
ROOT_DIGEST_SIZE = 32
#: TDX MRCONFIGID is 48 bytes: the root digest, then zeros.
MR_CONFIG_ID_SIZE = 48
#: Hash of each TPM bank name the claims use.
_BANK_HASH = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
#: Model events considered per log (a log naming more is not one we wrote).
MAX_MODEL_EVENTS = 16


def tpm_model_event(root_digest: bytes) -> bytes:
    """TCG_PCClientTaggedEvent {taggedEventID, taggedEventDataSize, taggedEventData}, each
    UINT32 little-endian as the PFP's structures are."""
    return struct.pack("<II", MODEL_EVENT_ID, len(root_digest)) + root_digest


#: TPM_ALG_ID of each bank (TCG Algorithm Registry).
ALG_IDS = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}


def tpm_pcr_event2(pcr: int, event_type: int, digests: Mapping[str, bytes], data: bytes) -> bytes:
    """One crypto-agile log record, TCG_PCR_EVENT2 (PC Client PFP §10.2.2): pcrIndex,
    eventType, TPML_DIGEST_VALUES {count, (hashAlg, digest)...}, eventSize, event."""
    out = struct.pack("<III", pcr, event_type, len(digests))
    for bank, d in digests.items():
        out += struct.pack("<H", ALG_IDS[bank]) + d
    return out + struct.pack("<I", len(data)) + data


def tpm_event_digests(event: bytes, banks: Iterable[str]) -> dict[str, bytes]:
    """The digest a model event is extended with in each bank: that bank's hash of it."""
    return {b: hashlib.new(_BANK_HASH[b], event).digest() for b in banks}


def tpm_model_digests(
    events: Iterable[tuple[int, int, int, int, Mapping[str, bytes], bytes]],
    selection: Mapping[str, Iterable[int]],
) -> list[str]:
    """The root digests (hex) that sealgate model events in a replayed log commit to.

    ``events``: ``EventLog.events``; ``selection``: the quote's PCR selection. An event
    counts only if PCR 12 is quoted in every bank it carries a digest for, and every digest
    is its bank's hash of the event data (else the data is not what was extended)."""
    quoted = {bank for bank, idx in selection.items() if MODEL_PCR in set(idx)}
    out: list[str] = []
    for _n, _off, pcr, etype, digests, data in events:
        if pcr != MODEL_PCR or etype != EV_EVENT_TAG or len(data) != 8 + ROOT_DIGEST_SIZE:
            continue
        tag, size = struct.unpack_from("<II", data)
        if tag != MODEL_EVENT_ID or size != ROOT_DIGEST_SIZE:
            continue
        if not set(digests) & quoted:
            continue
        if any(
            b not in _BANK_HASH or hashlib.new(_BANK_HASH[b], data).digest() != d
            for b, d in digests.items()
        ):
            continue
        out.append(data[8:].hex())
        if len(out) >= MAX_MODEL_EVENTS:
            break
    return out


def _hex(v: Any) -> bytes | None:
    if not isinstance(v, str):
        return None
    try:
        return bytes.fromhex(v)
    except ValueError:
        return None


def model_commitments(platform: str, claims: Mapping[str, Any]) -> set[bytes]:
    """Every root digest the verified claims of ``platform`` commit to (module docstring)."""
    if platform == "snp":
        hd = _hex(claims.get("host_data"))
        return {hd} if hd is not None and len(hd) == ROOT_DIGEST_SIZE else set()
    if platform == "tdx":
        cid = _hex(claims.get("mr_config_id"))
        if cid is None or len(cid) != MR_CONFIG_ID_SIZE:
            return set()
        if cid[ROOT_DIGEST_SIZE:] != bytes(MR_CONFIG_ID_SIZE - ROOT_DIGEST_SIZE):
            return set()
        return {cid[:ROOT_DIGEST_SIZE]}
    if platform == "tpm":
        found = claims.get("model_digests")
        if not isinstance(found, list):
            return set()
        return {d for v in found if (d := _hex(v)) is not None and len(d) == ROOT_DIGEST_SIZE}
    return set()


def binding_hint(platform: str) -> str:
    return {
        "tpm": f"a model event in PCR {MODEL_PCR} of the replayed, quoted event log",
        "snp": "HOST_DATA",
        "tdx": "MRCONFIGID = root digest ‖ 16 zero bytes",
    }.get(platform, "no binding on this platform")


__all__ = [
    "ALG_IDS",
    "EV_EVENT_TAG",
    "MODEL_EVENT_ID",
    "MODEL_PCR",
    "binding_hint",
    "model_commitments",
    "tpm_event_digests",
    "tpm_model_digests",
    "tpm_model_event",
    "tpm_pcr_event2",
]
