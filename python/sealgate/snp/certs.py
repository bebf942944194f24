"""AMD's certificate hierarchy as a vendor profile of the PKI layer (``sealgate.pki``).

Per AMD pub. 57230 (VCEK/KDS specification) §2-3: the ARK (AMD Root Key) is a self-signed
RSA-4096 certificate per product line; it signs the ASK (AMD SEV Key, CN ``SEV-<product>``)
and the ASVK (AMD SEV VLEK Key, CN ``SEV-VLEK-<product>``), both RSA-4096; those sign the
P-384 VCEK (per chip and TCB, CN ``SEV-VCEK``) and VLEK (per cloud provider, CN
``SEV-VLEK``). All of these signatures are RSASSA-PSS with SHA-384, MGF1-SHA-384 and a
48-byte salt; sealgate demands exactly that. The VCEK/VLEK carry AMD extensions under
1.3.6.1.4.1.3704.1 (§3.1 Table 8), read by the PKI layer (``Certificate.amd_extensions``).

The chain itself is built and its signatures checked by ``pki.ChainVerifier`` (RFC 5280
§6.1: basic constraints, key usage, validity, the anchor's self-signature; its memo means a
bundle of known certificates costs no RSA work). What stays here is AMD's profile: the
product line, which intermediate name a VCEK or VLEK needs for it, which pinned ARK may
anchor it, AMD's CRLs, and the ``snp.*`` codes the ``x509.*`` failures become.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sealgate import pki
from sealgate.errors import ChainError, ParseError
from sealgate.trust import pin_for

#: RFC 5280 §4.2.1.2 subjectKeyIdentifier and §4.2.1.1 authorityKeyIdentifier (parsed by the
#: PKI layer; named here for the tests that build certificates carrying them).
OID_SUBJECT_KEY_ID = "2.5.29.14"
OID_AUTHORITY_KEY_ID = "2.5.29.35"

#: AMD's hierarchy signs with RSASSA-PSS / SHA-384 / MGF1-SHA-384 / salt 48 (pub. 57230 §2),
#: and ARK, ASK and ASVK keys are RSA-4096.
AMD_ALGORITHMS = ("rsa-pss-sha384",)
AMD_RSA_BITS = 4096
#: VCEK/VLEK → ASK/ASVK → ARK: exactly three certificates.
AMD_DEPTH = 3
#: hwID sizes: 64-byte CHIP_ID (Milan, Genoa), 8 bytes on Turin (AMD pub. 57230, the VCEK/KDS
#: specification).
HWID_LEN = {"Milan": 64, "Genoa": 64, "Turin": 8}

#: The PKI layer's chain failures as AMD's stable codes. keyUsage and pathLenConstraint
#: refusals say the certificate may not act as the CA the hierarchy needs (``not_ca``);
#: anything ending without a trusted ARK is ``untrusted_root``.
CHAIN_CODES = {
    "x509.chain.not_ca": "snp.chain.not_ca",
    "x509.chain.key_usage": "snp.chain.not_ca",
    "x509.chain.path_len_exceeded": "snp.chain.not_ca",
    "x509.chain.bad_key": "snp.chain.bad_key",
    "x509.chain.algorithm_not_allowed": "snp.chain.bad_signature_algorithm",
    "x509.chain.unsupported_algorithm": "snp.chain.bad_signature_algorithm",
    "x509.chain.signature_invalid": "snp.chain.signature_invalid",
    "x509.chain.expired": "snp.chain.expired",
    "x509.chain.not_yet_valid": "snp.chain.not_yet_valid",
    "x509.chain.untrusted_root": "snp.chain.untrusted_root",
    "x509.chain.no_issuer": "snp.chain.untrusted_root",
    "x509.chain.no_anchors": "snp.chain.untrusted_root",
    "x509.chain.too_long": "snp.chain.untrusted_root",
}
#: The PKI layer's CRL failures as AMD's codes (a CRL signed with anything but AMD's PSS is
#: refused like a certificate would be).
CRL_CODES = {
    "x509.crl.wrong_issuer": "snp.crl.wrong_issuer",
    "x509.crl.signature_invalid": "snp.crl.signature_invalid",
    "x509.crl.key_usage": "snp.crl.signature_invalid",
    "x509.crl.expired": "snp.crl.expired",
    "x509.crl.algorithm_not_allowed": "snp.chain.bad_signature_algorithm",
    "x509.crl.unsupported_algorithm": "snp.chain.bad_signature_algorithm",
}


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


def product_line(name: str | None) -> str | None:
    """``Milan-B0`` → ``Milan``."""
    if not name:
        return None
    head = name.split("-", 1)[0]
    return head if head in HWID_LEN else None


#: AMD extension refusals that are malformed DER inside the certificate (not one DER value,
#: not a minimal non-negative INTEGER): those are format errors like any other in the
#: certificate; a well-formed value AMD does not allow (an SPL above 255, a name of another
#: string type) is ``snp.vcek.bad_extension``.
_DER_LEVEL = ("is not one DER value", "not INTEGER", "is not a non-negative INTEGER")


def _amd_extensions(cert: pki.Certificate) -> pki.AmdExtensions:
    try:
        return cert.amd_extensions()
    except ParseError as e:
        code = "x509.format.invalid" if any(s in e.message for s in _DER_LEVEL) else None
        raise ParseError(code or "snp.vcek.bad_extension", e.message, e.field, e.offset) from None


def parse_endorsement_key(cert: pki.Certificate) -> EndorsementKey:
    """Read a VCEK or VLEK certificate's key and AMD extensions."""
    if cert.key_type[0] != "ec" or cert.key_type[2] != pki.OID_P384:
        raise ChainError(
            "snp.vcek.unsupported_key", f"{cert.subject_cn!r} key is not EC P-384 ({pki.OID_P384})"
        )
    ext = _amd_extensions(cert)
    cn = cert.subject_cn
    if cn == "SEV-VLEK" or (ext.hwid is None and ext.csp_id is not None):
        kind = "vlek"
    elif cn == "SEV-VCEK" or ext.hwid is not None:
        kind = "vcek"
    else:
        raise ChainError("snp.vcek.unknown_kind", f"{cn!r} is neither a VCEK nor a VLEK")
    return EndorsementKey(
        kind=kind,
        product_name=ext.product_name,
        product=product_line(ext.product_name),
        bl_spl=ext.bl_spl,
        tee_spl=ext.tee_spl,
        snp_spl=ext.snp_spl,
        ucode_spl=ext.ucode_spl,
        fmc_spl=ext.fmc_spl,
        hwid=ext.hwid,
        csp_id=ext.csp_id,
        point=cert.public_key_bits,
    )


def may_have_issued(cert: pki.Certificate, candidate: pki.Certificate) -> bool:
    """Whether ``candidate`` can be ``cert``'s issuer without a signature check: the names
    link and, when both state key identifiers, those agree (RFC 5280 §4.2.1.1: the AKI
    names the key that signed). The chain builder applies the same rule; the profile uses
    it to pick the intermediates worth handing to it and to name what is missing."""
    if candidate.subject != cert.issuer:
        return False
    aki = cert.core.authority_key_id
    ski = candidate.core.subject_key_id
    return aki is None or ski is None or aki == ski


def intermediate_cn(kind: str, product: str) -> str:
    return f"SEV-{product}" if kind == "vcek" else f"SEV-VLEK-{product}"


@dataclass(frozen=True)
class AmdChain:
    """A verified VCEK/VLEK → ASK/ASVK → ARK path and what AMD's profile made of it."""

    path: pki.Path
    endorsement: EndorsementKey
    root_pin: str | None  # pin name, or None when the root was given explicitly
    product: str
    crl: pki.Crl | None  # the CRL that was checked (the verifier's own when it has one)
    not_before: datetime  # the chain (and CRL) are valid in [not_before, not_after]
    not_after: datetime

    @property
    def leaf(self) -> pki.Certificate:
        return self.path.leaf

    @property
    def intermediate(self) -> pki.Certificate:
        return self.path.certs[1]

    @property
    def root(self) -> pki.Certificate:
        return self.path.anchor


class AmdChainVerifier:
    """AMD's profile over one ``pki.ChainVerifier``, whose signature memo it owns."""

    def __init__(self, memo_entries: int = 65536) -> None:
        self.chains = pki.ChainVerifier(
            AMD_ALGORITHMS,
            max_depth=AMD_DEPTH,
            issuer_rsa_bits=AMD_RSA_BITS,
            check_anchor_signature=True,
            memo_entries=memo_entries,
        )
        # The leaf's link alone (VCEK/VLEK under an ASK/ASVK taken as given), to say what is
        # wrong below the root when no trusted ARK is there to build a path to.
        self._links = pki.ChainVerifier(
            AMD_ALGORITHMS, max_depth=2, issuer_rsa_bits=AMD_RSA_BITS, memo_entries=256
        )

    def clear(self) -> None:
        self.chains.clear()
        self._links.clear()

    def check_crl(self, crl: pki.Crl, root: pki.Certificate, at: datetime | None) -> None:
        """``crl`` is ``root``'s (pub. 57230 §4: ``/vcek/v1/{product}/crl`` is signed by the
        ARK) and, with ``at``, current. Raises ChainError with ``snp.*`` codes."""
        try:
            self.chains.check_crl(crl, root, at)
        except ChainError as e:
            raise pki.remap(e, CRL_CODES, "snp.crl.signature_invalid") from None

    def verify_chain(
        self,
        leaf: pki.Certificate,
        candidates: Sequence[pki.Certificate],
        explicit_roots: Sequence[pki.Certificate],
        product: str | None,
        at: datetime,
        crl: pki.Crl | None,
        *,
        revocation: Revocation | None = None,
    ) -> AmdChain:
        """Build and verify leaf → intermediate → root at time ``at``; raise the first failure.

        ``candidates`` are untrusted certificates (bundles, trust directory, cache); a root
        among them is trusted only if pinned. ``explicit_roots`` are trusted because the
        caller named them (``--roots``). ``crl``: a CRL as supplied with the evidence.
        ``revocation``: the verifier's own CRLs; when given they decide (``Revocation``) and
        ``crl`` can only add revocations.
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
        inters = _intermediates(leaf, ek, product, candidates)
        # Trust anchors: the ARKs the caller named, then pinned SNP roots among the
        # candidates, of the name the intermediates give their issuer (a pin of another
        # platform never anchors an AMD chain; nor does anything the ASK could not name).
        ark_names = {i.issuer for i in inters}
        anchors: dict[str, pki.Certificate] = {}
        for c in [*explicit_roots, *(c for c in candidates if pin_for(c.fingerprint))]:
            p = pin_for(c.fingerprint)
            if c.subject in ark_names and (p is None or p.platform == "snp"):
                anchors.setdefault(c.fingerprint, c)
        # The pool: the intermediates, and the untrusted roots of their name, so that a
        # chain ending at a supplied but unpinned ARK fails as such (``untrusted_root``)
        # rather than as the trusted ARK's signature not verifying.
        roots = [
            c
            for c in candidates
            if c.subject in ark_names and c.fingerprint not in anchors and c not in inters
        ]
        pool, trusted = [*inters, *roots], list(anchors.values())
        if not trusted:
            # Nothing to build to: what is wrong below the root comes first (the
            # intermediate's CA flag and key, the leaf's signature), then the root.
            try:
                self._links.build(leaf, [], inters)
            except ChainError as e:
                raise self._chain_failure(e, inters, roots, anchors) from None
        try:
            # Trust first, validity second: a chain that is both untrusted and expired is
            # reported as untrusted. Only when the path found is not valid at ``at`` is it
            # built again at that time, which finds an equally trusted one that is (a
            # renewed ASK next to an expired one) or names the certificate that is not.
            path = self.chains.build(leaf, pool, trusted)
            if path.invalid_at(at) is not None:
                path = self.chains.build(leaf, pool, trusted, at)
        except ChainError as e:
            raise self._chain_failure(e, inters, roots, anchors) from None
        if len(path.certs) != AMD_DEPTH:
            # A trusted root issuing the leaf directly is no AMD hierarchy.
            raise ChainError(
                "snp.chain.missing_intermediate",
                f"{ek.kind.upper()} is not issued through {intermediate_cn(ek.kind, product)}",
            )
        root = path.anchor
        pin = pin_for(root.fingerprint)
        root_pin = pin.name if pin is not None else None
        if root_pin is not None and root_pin != f"ark-{product.lower()}":
            raise ChainError(
                "snp.chain.wrong_product", f"root is pinned as {root_pin}, product is {product}"
            )
        if root.subject != root.issuer:
            raise ChainError("snp.chain.bad_root", f"{root.subject_cn!r} is not self-issued")
        inter = path.certs[1]
        below_root = ((inter, inter.subject_cn), (leaf, ek.kind.upper()))
        not_before, not_after = path.not_before, path.not_after
        if crl is not None:
            self.check_crl(crl, root, at)
            _check_revoked(crl, below_root)
            if revocation is None:
                not_before = max(not_before, crl.this_update)
                if crl.next_update is not None:
                    not_after = min(not_after, crl.next_update)
        if revocation is not None:
            own = revocation.check(self, root, at, below_root, ek.kind)
            if own is not None:
                crl = own
                not_before = max(not_before, own.this_update)
                if own.next_update is not None:
                    not_after = min(not_after, own.next_update)
        return AmdChain(path, ek, root_pin, product, crl, not_before, not_after)

    @staticmethod
    def _chain_failure(
        e: ChainError,
        inters: Sequence[pki.Certificate],
        unpinned: Sequence[pki.Certificate],
        anchors: dict[str, pki.Certificate],
    ) -> ChainError:
        """The builder's failure in AMD's terms (``unpinned``: the supplied roots that are
        not trusted, named in the message when the chain ends without a trusted one)."""
        if e.code == "x509.chain.bad_key":
            # A key of an algorithm nobody implements is a malformed certificate, as it is
            # for the PKI layer's own key loading (``Certificate.public_key``).
            for c in [*inters, *anchors.values()]:
                if c.key_type[0] == "other":
                    c.public_key()  # raises ParseError x509.format.invalid
        if e.code == "x509.chain.not_ca" and all(c.is_ca() for c in inters):
            # The intermediates are CAs: what is not is the root.
            return ChainError("snp.chain.bad_root", e.message)
        out = pki.remap(e, CHAIN_CODES, "snp.chain.untrusted_root")
        if out.code == "snp.chain.untrusted_root":
            want = ", ".join(sorted({c.subject_cn for c in inters}))
            listed = ", ".join(f"{c.subject_cn} sha256 {c.fingerprint}" for c in unpinned)
            return ChainError(
                out.code,
                f"no pinned or explicitly given ARK for {want}"
                + (f" (unpinned candidates: {listed})" if listed else ""),
            )
        return out


def _intermediates(
    leaf: pki.Certificate,
    ek: EndorsementKey,
    product: str,
    candidates: Sequence[pki.Certificate],
) -> list[pki.Certificate]:
    """The candidates that may be the leaf's ASK/ASVK for ``product``: issuer by name and
    key identifier, and the name AMD gives that intermediate (pub. 57230 §2). Several can
    qualify (trust directory, bundle, cache, or a planted impostor): the builder tries each."""
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
    matching: dict[str, pki.Certificate] = {}
    for c in issuers:
        if c.subject_cn == want_cn:
            matching.setdefault(c.fingerprint, c)
    if not matching:
        raise ChainError(
            "snp.chain.wrong_product",
            f"{ek.kind.upper()} issued by {issuers[0].subject_cn!r}, expected {want_cn!r}",
        )
    return list(matching.values())


def _check_revoked(crl: pki.Crl, certs: tuple[tuple[pki.Certificate, str], ...]) -> None:
    for c, what in certs:
        if crl.revokes(c):
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

    crls: tuple[pki.Crl, ...] = ()
    allow_missing: bool = False
    #: CRLs for one hierarchy only ("vcek" or "vlek"): KDS serves one per hierarchy, both
    #: signed by the ARK, so the issuer alone cannot tell them apart.
    kind_crls: tuple[tuple[str, pki.Crl], ...] = ()

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
        amd: AmdChainVerifier,
        root: pki.Certificate,
        at: datetime,
        certs: tuple[tuple[pki.Certificate, str], ...],
        kind: str,
    ) -> pki.Crl | None:
        """Raise when a certificate is revoked or no current CRL applies (and that is not
        allowed); return the current CRL that bounds the result's validity, if any."""
        pool = [*self.crls, *(c for k, c in self.kind_crls if k == kind)]
        mine = [c for c in pool if c.issuer == root.subject]
        current: pki.Crl | None = None
        for c in mine:
            # Signature only: a stale CRL's revocations still count.
            amd.check_crl(c, root, None)
            _check_revoked(c, certs)
            if c.current_at(at) and (current is None or c.this_update > current.this_update):
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
