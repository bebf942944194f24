"""A software TPM for tests and benchmarks: enrolls and quotes like a real one.

It has an RSA-2048 EK certified by its own CA (TCG EK profile: EKU 2.23.133.8.1, SAN with
TPM manufacturer/model/version), an ECC P-256 restricted-signing AK (``SoftAk``: TPMT_PUBLIC,
Name and TPMS_ATTEST quotes as a TPM makes them), answers MakeCredential with a software
ActivateCredential, and quotes its own SHA-256 PCR bank. Nothing here is trusted by the
service unless its CA is configured as an EK root, like a hardware TPM vendor's CA.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sealgate._proto import attestation_pb2
from sealgate.pki import to_pem
from sealgate.testing import snp, tdx
from sealgate.testing.softtpm import SoftAk
from sealgate.tpm.enroll import (
    OID_TCG_KP_EK_CERTIFICATE,
    OID_TPM_MANUFACTURER,
    OID_TPM_MODEL,
    OID_TPM_VERSION,
    Credential,
    activate_credential,
)


class SoftwareCa:
    """A root CA that issues EK certificates (a stand-in for a TPM vendor's CA)."""

    def __init__(
        self, name: str = "sealgate software EK CA", *, pem: tuple[bytes, bytes] | None = None
    ) -> None:
        if pem is not None:
            # (private key, certificate) from ``to_pem``: another process issues EK
            # certificates under the same root (the service benchmark's load generators).
            key = serialization.load_pem_private_key(pem[0], None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TypeError("software EK CA keys are ECC")
            self.key = key
            self.cert = x509.load_pem_x509_certificate(pem[1])
            return
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def to_pem(self) -> tuple[bytes, bytes]:
        """Private key and certificate, for ``SoftwareCa(pem=...)`` in another process."""
        key = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return key, self.pem

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem)
        return path

    def issue_ek(self, ek: rsa.RSAPublicKey) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        san = x509.SubjectAlternativeName(
            [
                x509.DirectoryName(
                    x509.Name(
                        [
                            x509.NameAttribute(
                                x509.ObjectIdentifier(OID_TPM_MANUFACTURER), "id:53474154"
                            ),
                            x509.NameAttribute(x509.ObjectIdentifier(OID_TPM_MODEL), "softtpm"),
                            x509.NameAttribute(
                                x509.ObjectIdentifier(OID_TPM_VERSION), "id:00010000"
                            ),
                        ]
                    )
                )
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(ek)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(san, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.ObjectIdentifier(OID_TCG_KP_EK_CERTIFICATE)]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, True, False, False, False, False, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)


class SoftwareTpm:
    """Collector (``sealgate.node.agent.TpmCollector``) backed by software keys.

    The AK and its quotes come from ``sealgate.testing.softtpm.SoftAk`` (ECC P-256); this
    adds the EK, its certificate and ActivateCredential so the AK enrolls like a TPM's.
    """

    platform = "tpm"

    def __init__(self, ca: SoftwareCa, selection: tuple[int, ...] = tuple(range(8))) -> None:
        self.ek = rsa.generate_private_key(65537, 2048)
        self.ek_cert = ca.issue_ek(self.ek.public_key())
        self.ak = SoftAk("ecc")
        self.ak_name = self.ak.name
        self.selection = selection
        self.pcrs = {i: bytes(32) for i in range(24)}

    def extend(self, pcr: int, data: bytes) -> None:
        self.pcrs[pcr] = hashlib.sha256(self.pcrs[pcr] + hashlib.sha256(data).digest()).digest()

    # -- TpmCollector -----------------------------------------------------------------
    def enrollment_material(self) -> tuple[bytes, list[bytes], bytes]:
        return self.ek_cert, [], self.ak.tpm2b_public

    def activate(self, id_object: bytes, encrypted_secret: bytes) -> bytes:
        """Like TPM2_ActivateCredential: fails unless the blob was made for our EK and AK."""
        from sealgate.errors import SealgateError
        from sealgate.node.agent import AgentError

        try:
            cred = Credential(id_object, encrypted_secret)
            return activate_credential(self.ek, self.ak_name, cred)
        except (ValueError, SealgateError):
            raise AgentError(
                "node.tpm.activatecredential_failed", "credential not for this EK/AK"
            ) from None

    def quote(self, extra_data: bytes) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, TPMT_SIGNATURE) over the selected SHA-256 PCRs."""
        return self.ak.quote(extra_data, {"sha256": self.pcrs}, [("sha256", self.selection)])

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        attest, sig = self.quote(binding[:32])
        return attestation_pb2.Evidence(
            tpm=attestation_pb2.TpmEvidence(
                quote=attest,
                signature=sig,
                pcrs=[
                    attestation_pb2.PcrValue(bank="sha256", index=i, value=self.pcrs[i])
                    for i in sorted(self.selection)
                ],
            )
        )

    def pcr_reference_values(self) -> dict[str, str]:
        return {f"sha256:{i}": self.pcrs[i].hex() for i in sorted(self.selection)}


class SoftwareSnp:
    """Collector playing an SEV-SNP guest with the synthetic AMD world (``sealgate.testing.snp``).

    Reports carry the runtime-key binding as REPORT_DATA and are signed by the synthetic
    VCEK; the evidence carries the VCEK and the ASK/ARK chain as a configfs-tsm node would.
    """

    platform = "snp"

    def __init__(
        self, fields: snp.ReportFields | None = None, *, portable: dict[str, object] | None = None
    ) -> None:
        self.fields = fields if fields is not None else snp.ReportFields()
        if portable is None:
            world = snp.world()
            self.vcek = world.vcek
            self.chain_pem = world.milan.cert_chain_pem()
            self.ark_der = world.milan.ark_der
            self.crl = world.crl
            return
        # Built by ``to_portable`` in another process: the synthetic world's RSA-4096 prime
        # searches run in pure Python, once per process, and take a while on a slow core.
        key = serialization.load_pem_private_key(_bytes(portable["vcek_key"]), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("a VCEK key is ECC")
        tcb = portable["tcb"]
        if not isinstance(tcb, snp.Tcb):
            raise TypeError("tcb must be a Tcb")
        self.vcek = snp.Endorsement(
            _bytes(portable["vcek_der"]),
            key,
            str(portable["kind"]),
            str(portable["product"]),
            tcb,
            _bytes(portable["chip_id"]),
        )
        self.chain_pem = _bytes(portable["chain_pem"])
        self.ark_der = _bytes(portable["ark_der"])
        self.crl = _bytes(portable["crl"])

    def to_portable(self) -> dict[str, object]:
        """Picklable material for ``SoftwareSnp(portable=...)`` in another process."""
        key = self.vcek.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "vcek_der": self.vcek.der,
            "vcek_key": key,
            "kind": self.vcek.kind,
            "product": self.vcek.product,
            "tcb": self.vcek.tcb,
            "chip_id": self.vcek.chip_id,
            "chain_pem": self.chain_pem,
            "ark_der": self.ark_der,
            "crl": self.crl,
        }

    def root_pem(self) -> bytes:
        return bytes(to_pem(self.ark_der))

    def write_trust(self, directory: Path) -> dict[str, list[Path]]:
        """Write the ARK and the ARK's current CRL (what a verifier configures for this
        world) into ``directory``; returns the ``snp_roots``/``snp_crls`` settings."""
        roots, crl = directory / "amd-roots.pem", directory / "amd-crl.der"
        roots.write_bytes(self.root_pem())
        crl.write_bytes(self.crl)
        return {"snp_roots": [roots], "snp_crls": [crl]}

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        report = snp.build_report(self.vcek, replace(self.fields, report_data=binding))
        return attestation_pb2.Evidence(
            snp=attestation_pb2.SnpEvidence(
                report=report, vcek=self.vcek.der, cert_chain=self.chain_pem
            )
        )


def _bytes(v: object) -> bytes:
    if not isinstance(v, bytes):
        raise TypeError("expected bytes")
    return v


class SoftwareTdx:
    """Collector playing a TDX guest with the fake Intel DCAP hierarchy (``sealgate.testing.tdx``):
    quotes over the binding as REPORTDATA, collateral JSON sent with the evidence."""

    platform = "tdx"

    def __init__(self, intel: tdx.FakeIntel | None = None, **quote_kw: object) -> None:
        # Collateral issued yesterday (midnight UTC), as a PCCS refreshing daily serves it:
        # verifiers bound how old collateral may be.
        now = datetime.datetime.now(datetime.UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.intel = intel or tdx.FakeIntel(issue_date=day - datetime.timedelta(days=1))
        self.quote_kw = quote_kw
        self.collateral = self.intel.collateral_json()

    def root_pem(self) -> bytes:
        return bytes(self.intel.root_pem)

    def collect(self, nonce: bytes, binding: bytes) -> attestation_pb2.Evidence:
        quote = self.intel.quote(binding, **self.quote_kw)  # type: ignore[arg-type]
        return attestation_pb2.Evidence(
            tdx=attestation_pb2.TdxEvidence(quote=quote, collateral=self.collateral)
        )
