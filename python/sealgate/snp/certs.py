"""AMD certificate hierarchy: VCEK → ASK → ARK and VLEK → ASVK → ARK.

Per AMD pub. 57230 (VCEK/KDS specification) §2-3: the ARK (AMD Root Key) is a self-signed
RSA-4096 certificate per product line; it signs the ASK (AMD SEV Key, CN ``SEV-<product>``)
and the ASVK (AMD SEV VLEK Key, CN ``SEV-VLEK-<product>``), both RSA-4096; those sign the
P-384 VCEK (per chip and TCB, CN ``SEV-VCEK``) and VLEK (per cloud provider, CN
``SEV-VLEK``). All of these signatures are RSASSA-PSS with SHA-384, MGF1-SHA-384 and a
48-byte salt; sealgate demands exactly that. The VCEK/VLEK carry AMD extensions under
1.3.6.1.4.1.3704.1 (§3.1 Table 8): structVersion (.1), productName (.2), the TCB security
patch levels blSPL (.3.1), teeSPL (.3.2), snpSPL (.3.3), ucodeSPL (.3.8), fmcSPL (.3.9,
Turin), hwID (.4: CHIP_ID; 8 bytes on Turin) and, on a VLEK, cspId (.5).

Chains are verified with ``cryptography`` once and cached (``sealgate.snp``); per-report work
is the Rust signature check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import rsa

from sealgate.errors import ChainError, ParseError
from sealgate.lru import BoundedCache
from sealgate.trust import pin_for
from sealgate.x509der import (
    OID_EC_PUBLIC_KEY,
    OID_P384,
    OID_RSASSA_PSS,
    OID_SHA384,
    Certificate,
    Crl,
    Der,
    parse_pss_params,
    verify_signature,
)

AMD_OID = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = f"{AMD_OID}.1"
OID_PRODUCT_NAME = f"{AMD_OID}.2"
OID_BL_SPL = f"{AMD_OID}.3.1"
OID_TEE_SPL = f"{AMD_OID}.3.2"
OID_SNP_SPL = f"{AMD_OID}.3.3"
OID_UCODE_SPL = f"{AMD_OID}.3.8"
OID_FMC_SPL = f"{AMD_OID}.3.9"
OID_HWID = f"{AMD_OID}.4"
OID_CSP_ID = f"{AMD_OID}.5"
#: RFC 5280 §4.2.1.2 subjectKeyIdentifier and §4.2.1.1 authorityKeyIdentifier.
OID_SUBJECT_KEY_ID = "2.5.29.14"
OID_AUTHORITY_KEY_ID = "2.5.29.35"

#: AMD's hierarchy signs with RSASSA-PSS / SHA-384 / MGF1-SHA-384 / salt 48 (pub. 57230 §2).
AMD_PSS_SALT = 48
#: hwID sizes: 64-byte CHIP_ID (Milan, Genoa), 8 bytes on Turin (AMD pub. 57230, the VCEK/KDS
#: specification).
HWID_LEN = {"Milan": 64, "Genoa": 64, "Turin": 8}


@dataclass(frozen=True)
class EndorsementKey:
    """What a VCEK/VLEK certificate says about the chip and TCB it endorses."""

    kind: str  # "vcek" | "vlek"
    product_name: str | None  # e.g. "Milan-B0", "Turin"
    product: str | None  # product line derived from product_name
    bl_spl: int | None
    tee_spl: int | None
    snp_spl: int | None
    ucode_spl: int | None
    fmc_spl: int | None
    hwid: bytes | None
    csp_id: str | None
    point: bytes  # uncompressed SEC1 P-384 point


def _int_ext(cert: Certificate, oid: str) -> int | None:
    ext = cert.extensions.get(oid)
    if ext is None:
        return None
    d = Der(ext.value, f"extension {oid}")
    v = d.integer()
    d.expect_end()
    if not 0 <= v <= 255:
        raise ParseError("snp.vcek.bad_extension", f"extension {oid} value {v} is not a byte")
    return v


def _str_ext(cert: Certificate, oid: str) -> str | None:
    ext = cert.extensions.get(oid)
    if ext is None:
        return None
    d = Der(ext.value, f"extension {oid}")
    tag, _, s, e = d.read()
    d.expect_end()
    if tag not in (0x0C, 0x13, 0x16):  # UTF8String, PrintableString, IA5String
        raise ParseError("snp.vcek.bad_extension", f"extension {oid} has tag 0x{tag:02x}")
    return ext.value[s:e].decode("utf-8", "replace")


def product_line(name: str | None) -> str | None:
    """``Milan-B0`` → ``Milan``."""
    if not name:
        return None
    head = name.split("-", 1)[0]
    return head if head in HWID_LEN else None


def parse_endorsement_key(cert: Certificate) -> EndorsementKey:
    """Read a VCEK or VLEK certificate's key and AMD extensions."""
    if (
        cert.spki_alg.oid != OID_EC_PUBLIC_KEY
        or cert.spki_alg.params != b"\x06\x05+\x81\x04\x00\x22"
    ):
        raise ChainError(
            "snp.vcek.unsupported_key", f"{cert.subject_cn!r} key is not EC P-384 ({OID_P384})"
        )
    point = cert.public_key_bits
    hwid_ext = cert.extensions.get(OID_HWID)
    csp = _str_ext(cert, OID_CSP_ID)
    cn = cert.subject_cn
    if cn == "SEV-VLEK" or (hwid_ext is None and csp is not None):
        kind = "vlek"
    elif cn == "SEV-VCEK" or hwid_ext is not None:
        kind = "vcek"
    else:
        raise ChainError("snp.vcek.unknown_kind", f"{cn!r} is neither a VCEK nor a VLEK")
    name = _str_ext(cert, OID_PRODUCT_NAME)
    return EndorsementKey(
        kind=kind,
        product_name=name,
        product=product_line(name),
        bl_spl=_int_ext(cert, OID_BL_SPL),
        tee_spl=_int_ext(cert, OID_TEE_SPL),
        snp_spl=_int_ext(cert, OID_SNP_SPL),
        ucode_spl=_int_ext(cert, OID_UCODE_SPL),
        fmc_spl=_int_ext(cert, OID_FMC_SPL),
        hwid=hwid_ext.value if hwid_ext is not None else None,
        csp_id=csp,
        point=point,
    )


def _check_amd_pss(cert_or_crl: Certificate | Crl, what: str) -> None:
    alg = cert_or_crl.signature_alg
    if alg.oid != OID_RSASSA_PSS:
        raise ChainError(
            "snp.chain.bad_signature_algorithm", f"{what} is signed with {alg.oid}, not RSASSA-PSS"
        )
    p = parse_pss_params(alg.params, what)
    if (p.hash_oid, p.mgf_hash_oid, p.salt_length) != (OID_SHA384, OID_SHA384, AMD_PSS_SALT):
        raise ChainError(
            "snp.chain.bad_signature_algorithm",
            f"{what}: RSASSA-PSS {p}, expected SHA-384/MGF1-SHA-384/salt 48",
        )


#: Signatures already verified, keyed by (SHA-256 of the signed certificate or CRL, SHA-256
#: of the issuer certificate): a new bundle holding known certificates costs no RSA work.
#: Entries are two hex digests (fixed size), bounded in number and so in bytes.
_VERIFIED_MAX = 65536
_VERIFIED: BoundedCache[tuple[str, str], bool] = BoundedCache(_VERIFIED_MAX, _VERIFIED_MAX * 320)


def _verify(cert: Certificate | Crl, issuer: Certificate, what: str, code: str) -> None:
    _check_amd_pss(cert, what)
    key = (cert.fingerprint, issuer.fingerprint)
    if key in _VERIFIED:
        return
    verify_signature(
        cert.tbs, cert.signature_alg, cert.signature, issuer.public_key(), what, code=code
    )
    _VERIFIED.put(key, True, 192)


def clear_signature_cache() -> None:
    _VERIFIED.clear()


#: ARK, ASK and ASVK keys are RSA-4096 (pub. 57230 §2).
AMD_RSA_BITS = 4096


def _require_rsa4096(cert: Certificate, what: str) -> None:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != AMD_RSA_BITS:
        raise ChainError("snp.chain.bad_key", f"{what} key is not RSA-{AMD_RSA_BITS}")


def _key_id(cert: Certificate, oid: str) -> bytes | None:
    """The key identifier a certificate states: its own (SKI, an OCTET STRING) or its
    issuer's (AKI's ``[0] keyIdentifier``); None when absent."""
    ext = cert.extensions.get(oid)
    if ext is None:
        return None
    d = Der(ext.value, f"extension {oid}")
    if oid == OID_SUBJECT_KEY_ID:
        return d.content(0x04)
    seq = d.sub(0x30)
    return seq.content(0x80) if seq.peek_tag() == 0x80 else None


def may_have_issued(cert: Certificate, candidate: Certificate) -> bool:
    """Whether ``candidate`` can be ``cert``'s issuer without a signature check: the names
    link and, when both state key identifiers, those agree (RFC 5280 §4.2.1.1: the AKI
    names the key that signed). Only candidates passing this are worth an RSA
    verification; a malformed identifier rules the candidate out."""
    if candidate.subject != cert.issuer:
        return False
    try:
        aki = _key_id(cert, OID_AUTHORITY_KEY_ID)
        ski = _key_id(candidate, OID_SUBJECT_KEY_ID)
    except ParseError:
        return False
    return aki is None or ski is None or aki == ski


@dataclass(frozen=True)
class VerifiedChain:
    leaf: Certificate
    endorsement: EndorsementKey
    intermediate: Certificate
    root: Certificate
    root_pin: str | None  # pin name, or None when the root was given explicitly
    product: str
    crl: Crl | None  # the CRL that was checked (the verifier's own when it has one)
    not_before: datetime  # the chain (and CRL) are valid in [not_before, not_after]
    not_after: datetime


def intermediate_cn(kind: str, product: str) -> str:
    return f"SEV-{product}" if kind == "vcek" else f"SEV-VLEK-{product}"


def verify_chain(
    leaf: Certificate,
    candidates: list[Certificate],
    explicit_roots: list[Certificate],
    product: str | None,
    at: datetime,
    crl: Crl | None,
    *,
    revocation: Revocation | None = None,
) -> VerifiedChain:
    """Build and verify leaf → intermediate → root at time ``at``; raise the first failure.

    ``candidates`` are untrusted certificates (bundles, trust directory, cache); a root among
    them is trusted only if pinned. ``explicit_roots`` are trusted because the caller named
    them (``--roots``). ``crl``: a CRL as supplied with the evidence. ``revocation``: the
    verifier's own CRLs; when given they decide (``Revocation``) and ``crl`` can only add
    revocations.
    """
    ek = parse_endorsement_key(leaf)
    if product is None:
        product = ek.product
    if product is None:
        # Last resort: the product named by the intermediate that issued the leaf.
        for c in candidates:
            if c.subject == leaf.issuer:
                cn = c.subject_cn
                product = product_line(cn.removeprefix("SEV-VLEK-").removeprefix("SEV-"))
                if product:
                    break
    if product is None:
        raise ChainError(
            "snp.chain.unknown_product", "cannot tell the product line; pass --product"
        )
    if ek.product is not None and ek.product != product:
        raise ChainError(
            "snp.chain.wrong_product",
            f"{ek.kind.upper()} is for {ek.product_name}, verification is for {product}",
        )
    want_cn = intermediate_cn(ek.kind, product)
    issuers = [c for c in candidates if may_have_issued(leaf, c)]
    if not issuers:
        others = sorted(
            {
                c.subject_cn
                for c in candidates
                if (pl := product_line(c.subject_cn.split("-")[-1])) and pl != product
            }
        )
        if others:
            raise ChainError(
                "snp.chain.wrong_product",
                f"{ek.kind.upper()} for {product} needs {want_cn}; the chain holds "
                + ", ".join(others),
            )
        raise ChainError(
            "snp.chain.missing_intermediate",
            f"no {want_cn} certificate issued the {ek.kind.upper()} (issuer {leaf.issuer_cn!r})",
        )
    matching: dict[str, Certificate] = {}
    for c in issuers:
        if c.subject_cn == want_cn:
            matching.setdefault(c.fingerprint, c)
    if not matching:
        raise ChainError(
            "snp.chain.wrong_product",
            f"{ek.kind.upper()} issued by {issuers[0].subject_cn!r}, expected {want_cn!r}",
        )
    # Several candidates can carry the intermediate's name (trust directory, bundle, cache,
    # or a planted impostor): the chain holds if any of them completes it.
    first_error: ChainError | None = None
    for inter in matching.values():
        try:
            return _complete(
                leaf, ek, inter, want_cn, candidates, explicit_roots, product, at, crl, revocation
            )
        except ChainError as e:
            first_error = first_error or e
    assert first_error is not None
    raise first_error


def _complete(
    leaf: Certificate,
    ek: EndorsementKey,
    inter: Certificate,
    want_cn: str,
    candidates: list[Certificate],
    explicit_roots: list[Certificate],
    product: str,
    at: datetime,
    crl: Crl | None,
    revocation: Revocation | None,
) -> VerifiedChain:
    """The chain above a chosen intermediate: leaf signature, root, validity, CRL."""
    if not inter.is_ca():
        raise ChainError("snp.chain.not_ca", f"{want_cn} is not a CA certificate")
    _require_rsa4096(inter, want_cn)
    _verify(leaf, inter, f"{ek.kind.upper()} (signed by {want_cn})", "snp.chain.signature_invalid")

    pinned = [c for c in candidates if may_have_issued(inter, c) and pin_for(c.fingerprint)]
    explicit = [c for c in explicit_roots if may_have_issued(inter, c)]
    root: Certificate | None = None
    root_pin: str | None = None
    for c in explicit + pinned:
        p = pin_for(c.fingerprint)
        if p is not None and p.platform != "snp":
            continue
        try:
            _verify(
                inter, c, f"{want_cn} (signed by {c.subject_cn})", "snp.chain.signature_invalid"
            )
        except ChainError:
            continue
        root, root_pin = c, (p.name if p is not None else None)
        break
    if root is None:
        unpinned = [c for c in candidates if c.subject == inter.issuer]
        if unpinned or not (explicit or pinned):
            names = ", ".join(f"{c.subject_cn} sha256 {c.fingerprint}" for c in unpinned)
            raise ChainError(
                "snp.chain.untrusted_root",
                f"no pinned or explicitly given ARK for {want_cn}"
                + (f" (unpinned candidates: {names})" if names else ""),
            )
        raise ChainError(
            "snp.chain.signature_invalid", f"{want_cn} is not signed by any trusted ARK"
        )
    if root_pin is not None and root_pin != f"ark-{product.lower()}":
        raise ChainError(
            "snp.chain.wrong_product", f"root is pinned as {root_pin}, product is {product}"
        )
    _require_rsa4096(root, root.subject_cn)
    if root.subject != root.issuer or not root.is_ca():
        raise ChainError("snp.chain.bad_root", f"{root.subject_cn!r} is not a self-signed CA")
    _verify(root, root, f"{root.subject_cn} (self-signed)", "snp.chain.signature_invalid")

    for c, what in ((leaf, ek.kind.upper()), (inter, want_cn), (root, root.subject_cn)):
        if at < c.not_before:
            raise ChainError(
                "snp.chain.not_yet_valid",
                f"{what} is valid from {c.not_before.isoformat()}, "
                f"verification time {at.isoformat()}",
            )
        if at > c.not_after:
            raise ChainError(
                "snp.chain.expired",
                f"{what} expired {c.not_after.isoformat()}, verification time {at.isoformat()}",
            )
    not_before = max(leaf.not_before, inter.not_before, root.not_before)
    not_after = min(leaf.not_after, inter.not_after, root.not_after)
    if crl is not None:
        if crl.issuer != root.subject:
            raise ChainError(
                "snp.crl.wrong_issuer", f"CRL is not issued by {root.subject_cn} (wrong product?)"
            )
        _verify(crl, root, f"CRL of {root.subject_cn}", "snp.crl.signature_invalid")
        if at < crl.this_update or (crl.next_update is not None and at > crl.next_update):
            nu = crl.next_update.isoformat() if crl.next_update else "-"
            raise ChainError(
                "snp.crl.expired",
                f"CRL valid {crl.this_update.isoformat()}..{nu}, "
                f"verification time {at.isoformat()}",
            )
        _check_revoked(crl, ((inter, want_cn), (leaf, ek.kind.upper())))
        if revocation is None:
            not_before = max(not_before, crl.this_update)
            if crl.next_update is not None:
                not_after = min(not_after, crl.next_update)
    if revocation is not None:
        own = revocation.check(root, at, ((inter, want_cn), (leaf, ek.kind.upper())), ek.kind)
        if own is not None:
            crl = own
            not_before = max(not_before, own.this_update)
            if own.next_update is not None:
                not_after = min(not_after, own.next_update)
    return VerifiedChain(
        leaf=leaf,
        endorsement=ek,
        intermediate=inter,
        root=root,
        root_pin=root_pin,
        product=product,
        crl=crl,
        not_before=not_before,
        not_after=not_after,
    )


def _check_revoked(crl: Crl, certs: tuple[tuple[Certificate, str], ...]) -> None:
    for c, what in certs:
        if c.serial in crl.revoked:
            raise ChainError(
                "snp.chain.revoked", f"{what} serial {c.serial} is revoked by the ARK's CRL"
            )


@dataclass(frozen=True)
class Revocation:
    """The verifier's own AMD CRLs (configured files or the collateral cache), so that
    revocation does not depend on what the attester chooses to send.

    A CRL applies to a chain when the chain's ARK issued it and its signature verifies
    (pub. 57230 §4: ``/vcek/v1/{product}/crl`` is signed by the ARK). Every applicable CRL's
    revocations count. At least one of them must be current at the verification time
    (RFC 5280 §5.1.2.4-5: thisUpdate ≤ time ≤ nextUpdate); otherwise the chain fails with
    ``snp.crl.missing`` (none applies) or ``snp.crl.expired`` (none is current), unless
    ``allow_missing`` says the operator accepts that.
    """

    crls: tuple[Crl, ...] = ()
    allow_missing: bool = False
    #: CRLs for one hierarchy only ("vcek" or "vlek"): KDS serves one per hierarchy, both
    #: signed by the ARK, so the issuer alone cannot tell them apart.
    kind_crls: tuple[tuple[str, Crl], ...] = ()

    @property
    def key(self) -> tuple[object, ...]:
        """What the chain cache must key on: the CRLs' fingerprints and the setting."""
        return (
            tuple(c.fingerprint for c in self.crls),
            tuple((k, c.fingerprint) for k, c in self.kind_crls),
            self.allow_missing,
        )

    def check(
        self,
        root: Certificate,
        at: datetime,
        certs: tuple[tuple[Certificate, str], ...],
        kind: str,
    ) -> Crl | None:
        """Raise when a certificate is revoked or no current CRL applies (and that is not
        allowed); return the current CRL that bounds the result's validity, if any."""
        pool = [*self.crls, *(c for k, c in self.kind_crls if k == kind)]
        mine = [c for c in pool if c.issuer == root.subject]
        current: Crl | None = None
        for c in mine:
            _verify(c, root, f"CRL of {root.subject_cn}", "snp.crl.signature_invalid")
            _check_revoked(c, certs)
            if c.this_update <= at and (c.next_update is None or at <= c.next_update):
                if current is None or c.this_update > current.this_update:
                    current = c
        if current is None and not self.allow_missing:
            if not mine:
                raise ChainError(
                    "snp.crl.missing",
                    f"the verifier has no CRL of {root.subject_cn} (configure snp_crls or run "
                    "`sealgate collateral fetch snp`)",
                )
            latest = max(mine, key=lambda c: c.this_update)
            nu = latest.next_update.isoformat() if latest.next_update else "-"
            raise ChainError(
                "snp.crl.expired",
                f"the verifier's CRL of {root.subject_cn} is valid "
                f"{latest.this_update.isoformat()}..{nu}, verification time {at.isoformat()} "
                "(refresh it with `sealgate collateral fetch snp`)",
            )
        return current
