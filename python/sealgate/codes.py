"""The catalogue of stable error codes.

Every failure sealgate reports carries a machine code shaped ``component.sub.event``
(README "CLI"): callers and operators match on it, so it never changes meaning and is never
reused for another condition. This module lists every code the code base can produce, which
component produces it and what it means, in one place; ``tests/test_codes.py`` scans the
Python and Rust sources and fails when a code is produced that is not listed here, when a
listed code is produced nowhere, or when the README names a code that is not listed.
``docs/errors.md`` is rendered from this module (``python -m sealgate.codes``) and checked
by the same test.

A few configuration and service codes predate the three-part shape (``config.invalid``,
``service.rate_limited``, ...); they are stable contracts and stay as they are.

``RENAMED`` maps spellings that were retired when two codes named one condition to the code
that now names it. Audit-log entry kinds (``attest.decided``, ``admin.policy.put``, ...) share
the dotted shape but are not errors; they are listed in ``AUDIT_EVENTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple


class Code(NamedTuple):
    """One stable code: who produces it and what it means."""

    producer: str
    meaning: str


def _group(producer: str, codes: Mapping[str, str]) -> dict[str, Code]:
    return {code: Code(producer, meaning) for code, meaning in codes.items()}


#: Evidence parse failures from the Rust formats crate share one family,
#: ``<platform>.format.<kind>`` (rust/formats/src/error.rs); Python parsers of the same
#: structures (certificate table, PCR files, DER) reuse the same codes.
_FORMAT_KINDS = {
    "truncated": "input ended before the field did",
    "too_large": "a length or count exceeds the cap the format or sealgate allows",
    "invalid": "a value is outside what the specification allows (magic, enum, encoding)",
    "unsupported": "a well-formed value sealgate deliberately does not handle",
    "trailing_bytes": "bytes remain after a structure that must consume its input exactly",
    "reserved_nonzero": "a reserved (must-be-zero) field is not zero",
}
_PLATFORM_NAMES = {"tpm": "TPM", "snp": "SNP", "tdx": "TDX", "x509": "X.509"}

_FORMAT = {
    f"{platform}.format.{kind}": Code("formats (Rust), platform parsers", f"{name}: {meaning}")
    for platform, name in _PLATFORM_NAMES.items()
    for kind, meaning in _FORMAT_KINDS.items()
}

#: The Azure containers parsed in Rust (rust/formats/src/azure.rs) name their parse failures
#: ``azure.hcl.<kind>``, ``azure.quote_bin.<kind>`` and ``azure.runtime_data.<kind>``
#: (ParseError::code).
_AZURE_CONTAINERS = {
    "azure.hcl": "HCL report",
    "azure.quote_bin": "vTPM quote.bin",
    "azure.runtime_data": "HCL runtime data",
}
_AZURE_FORMAT = {
    f"{prefix}.{kind}": Code("formats (Rust), azure", f"{name}: {meaning}")
    for prefix, name in _AZURE_CONTAINERS.items()
    for kind, meaning in _FORMAT_KINDS.items()
}

#: The node agent reports a gRPC failure without a sealgate ErrorInfo as ``grpc.<status>``
#: (gRPC status code names, lower case: ``grpc.unavailable``, ``grpc.deadline_exceeded``, ...).
_GRPC_STATUSES = (
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
)
_GRPC = {
    f"grpc.{s}": Code(
        "node.agent", f"the service answered gRPC {s.upper()} without a sealgate error code"
    )
    for s in _GRPC_STATUSES
}

#: tpm2-tools commands the node agent runs; each failure is ``node.tpm.<tool>_failed``.
NODE_TPM_TOOLS = (
    "activatecredential",
    "createak",
    "createek",
    "evictcontrol",
    "flushcontext",
    "nvdefine",
    "nvread",
    "nvwrite",
    "policysecret",
    "quote",
    "readpublic",
    "startauthsession",
)
_NODE_TPM = {
    f"node.tpm.{tool}_failed": Code("node.tpm", f"tpm2_{tool} failed on the node")
    for tool in NODE_TPM_TOOLS
}

CODES: dict[str, Code] = {
    **_FORMAT,
    **_AZURE_FORMAT,
    # -- NVIDIA confidential-computing GPUs (sealgate.nvgpu) -------------------------------
    **_group(
        "nvgpu.report",
        {
            "gpu.format.invalid": "GPU report: a value is outside what SPDM 1.1 / NVIDIA allow",
            "gpu.format.reserved_nonzero": "GPU report: a reserved field is not zero (the "
            "family's kind; the SPDM 1.1 parser checks no reserved field today)",
            "gpu.format.too_large": "GPU report: longer than the cap sealgate allows",
            "gpu.format.trailing_bytes": "GPU report: bytes remain after a structure (unsigned "
            "bytes after the signature are refused)",
            "gpu.format.truncated": "GPU report: input ended before the field did",
            "gpu.format.unsupported": "GPU report: a measurement block is not in the DMTF form",
            "gpu.report.fwid_mismatch": "the report's opaque FWID is not the leaf "
            "certificate's TCG DICE FWID",
            "gpu.report.nonce_mismatch": "the report's SPDM request nonce is not the expected one",
            "gpu.report.signature_invalid": "the report's P-384 signature does not verify with "
            "the device certificate",
        },
    ),
    **_group(
        "nvgpu",
        {
            "gpu.evidence.duplicate_device": "two devices in one evidence set present the same "
            "leaf certificate",
            "gpu.evidence.invalid": "the GPU evidence (JSON list, base64, nonce) is malformed or "
            "empty",
            "gpu.evidence.too_large": "the GPU evidence holds more bytes or devices than allowed",
            "gpu.evidence.kind_mismatch": "an item's arch (GPU or NVSwitch) disagrees with "
            "its verified certificate chain",
            "gpu.topology.mismatch": "protected-PCIe GPUs in one set name different NVSwitch PDIs",
            "gpu.topology.mixed_mode": "one evidence set mixes protected-PCIe and other GPUs",
            "gpu.topology.not_ppcie": "NVSwitch evidence was given with GPUs not in "
            "protected-PCIe mode",
            "gpu.topology.switch_missing": "the GPUs name an NVSwitch that has no report in the "
            "set",
            "gpu.topology.switch_unknown": "an NVSwitch report is from a switch the GPUs are not "
            "connected to",
            "gpu.topology.switch_duplicate": "two NVSwitch reports in one set carry the same "
            "switch PDI",
            "gpu.topology.switch_gpus_mismatch": "the NVSwitches in one set name different GPU "
            "PDIs",
            "gpu.topology.gpu_count": "the NVSwitches name a different number of GPUs than the "
            "set holds",
        },
    ),
    **_group(
        "nvgpu.certs",
        {
            "gpu.chain.bad_dice_extension": "the leaf's TCG DICE extension is malformed",
            "gpu.chain.bad_key": "the device certificate key is not EC P-384",
            "gpu.chain.bad_signature_algorithm": "a certificate is not signed with ECDSA-SHA384",
            "gpu.chain.expired": "a certificate in the device chain has expired",
            "gpu.chain.invalid": "the device certificate chain is not a PEM chain",
            "gpu.chain.not_ca": "an issuer in the device chain is not a CA certificate",
            "gpu.chain.not_yet_valid": "a certificate in the device chain is not yet valid",
            "gpu.chain.signature_invalid": "a certificate is not signed by its issuer",
            "gpu.chain.too_large": "the device certificate chain is larger than allowed",
            "gpu.chain.too_long": "the device chain holds more certificates than NVIDIA's five",
            "gpu.chain.untrusted_root": "the chain does not end at a trusted NVIDIA Device "
            "Identity CA",
        },
    ),
    # -- Azure confidential VMs -----------------------------------------------------------
    **_group(
        "azure",
        {
            "azure.hcl.report_data_mismatch": "the hardware report_data is not SHA-256 of the "
            "runtime data followed by zeros",
            "azure.hcl.td_quote_missing": "a TDX HCL report came without the TD quote that "
            "attests its TDREPORT",
            "azure.hcl.td_quote_mismatch": "the TD quote does not repeat the HCL report's "
            "TDREPORT (report_data, MR_TD, RTMRs, ...)",
            "azure.runtime_data.ak_missing": "the runtime data carries no HCLAkPub",
            "azure.runtime_data.ak_unsupported": "HCLAkPub is not an RSA-2048..4096 signing "
            "key with e=65537",
            "azure.runtime_data.user_data_mismatch": "user-data is not the expected user data",
            "azure.evidence.invalid": "the Azure evidence JSON is malformed",
            "azure.evidence.pcr_count_mismatch": "a PCR list does not match the quote's "
            "SHA-256 selection",
            "azure.vtpm.quote_missing": "a nonce or event log was given without a vTPM quote",
            "azure.vtpm.signature_missing": "the vTPM quote came without its signature",
        },
    ),
    **_GRPC,
    **_NODE_TPM,
    # -- TPM ------------------------------------------------------------------------------
    **_group(
        "verify (Rust), tpm",
        {
            "tpm.quote.signature_invalid": "the quote signature does not verify with the AK",
            "tpm.quote.nonce_mismatch": "the quote's extraData is not the expected nonce",
            "tpm.quote.pcr_digest_mismatch": "the PCR values do not hash to the quoted pcrDigest",
            "tpm.quote.pcr_missing": "a PCR the quote selects has no supplied value",
            "tpm.quote.pcr_value_invalid": "a supplied PCR value has the wrong size for its bank",
            "tpm.quote.selection_insufficient": "the quote does not cover the required PCRs",
            "tpm.quote.scheme_mismatch": "the signature scheme does not match the AK's key",
            "tpm.quote.unsupported_scheme": "the signature scheme or hash is not accepted",
            "tpm.ak.not_restricted_signing": (
                "the AK is not a restricted signing key bound to the TPM "
                "(TPM 2.0 Part 1 §25.2.2; enrollment also requires fixedTPM, fixedParent and "
                "sensitiveDataOrigin, and no decrypt)"
            ),
            "tpm.ak.unsupported_key": "the AK key type or curve is not supported",
            "tpm.eventlog.replay_mismatch": "the replayed event log disagrees with the PCRs",
            "tpm.eventlog.invalid_pcr_index": "an event names a PCR index outside the bank",
            "tpm.eventlog.missing_digest": "an event lacks a digest for a replayed bank",
        },
    ),
    **_group(
        "tpm.enroll",
        {
            "tpm.ak.invalid": "the AK public area has no Name",
            "tpm.credential.integrity": "the credential blob's HMAC does not verify",
            "tpm.ek.cert_expired": "the EK certificate or a CA is outside its validity period",
            "tpm.ek.cert_invalid": "the EK certificate or a CA is not an X.509 certificate",
            "tpm.ek.chain_invalid": "a CA in the EK chain lacks CA basic constraints/key usage",
            "tpm.ek.chain_too_long": "no configured root within the chain depth limit",
            "tpm.ek.no_roots": "no EK CA roots are configured",
            "tpm.ek.profile_invalid": "the EK certificate breaks the TCG EK credential profile",
            "tpm.ek.signature_invalid": "a certificate in the EK chain does not verify",
            "tpm.ek.unsupported_key": "the EK key type has no supported EK template",
            "tpm.ek.untrusted_root": "the EK chain does not reach a configured root",
            "tpm.key.invalid": "a TPM public area has no public key",
            "tpm.key.unsupported": "a TPM public area uses an unsupported curve",
        },
    ),
    **_group(
        "service.core",
        {
            "tpm.ak.revoked": "the node's AK (or the node) has been revoked",
            "tpm.ak.unenrolled": "the node has no enrolled AK",
            "tpm.enroll.bad_node_id": "the node id is empty or too long",
            "tpm.enroll.node_id_taken": "the node id is bound to another TPM's EK",
            "tpm.enroll.revoked": "the TPM's EK or AK is revoked",
            "tpm.enroll.unknown": "the enrollment is unknown, answered already or expired",
            "tpm.enroll.wrong_secret": "the ActivateCredential answer is wrong",
        },
    ),
    # -- SEV-SNP --------------------------------------------------------------------------
    **_group(
        "snp.certs",
        {
            "snp.chain.bad_key": "an AMD CA key is not RSA-4096",
            "snp.chain.bad_root": "the ARK is not a self-signed CA",
            "snp.chain.bad_signature_algorithm": "a certificate is not signed with RSASSA-PSS",
            "snp.chain.expired": "a certificate in the chain has expired",
            "snp.chain.missing_intermediate": "no ASK/ASVK issued the VCEK/VLEK",
            "snp.chain.not_ca": "an ARK/ASK is not a CA certificate",
            "snp.chain.not_yet_valid": "a certificate in the chain is not yet valid",
            "snp.chain.revoked": "a certificate is revoked by the ARK's CRL",
            "snp.chain.signature_invalid": "a certificate is not signed by its issuer",
            "snp.chain.too_many_certificates": "a PEM chain holds more certificates than allowed",
            "snp.chain.unknown_product": "the product line cannot be determined",
            "snp.chain.untrusted_root": "no pinned or explicitly given ARK for the product",
            "snp.chain.wrong_product": "the VCEK/VLEK is for another product line",
            "snp.crl.expired": "the ARK's CRL is outside its validity period",
            "snp.crl.missing": "the verifier has no CRL for the ARK",
            "snp.crl.signature_invalid": "the CRL signature does not verify with the ARK",
            "snp.crl.wrong_issuer": "the CRL is not issued by the ARK",
            "snp.vcek.bad_extension": "an AMD VCEK extension value is malformed",
            "snp.vcek.unknown_kind": "the leaf certificate is neither a VCEK nor a VLEK",
        },
    ),
    **_group(
        "verify (Rust), snp",
        {
            "snp.report.signature_invalid": "the report signature does not verify",
            "snp.report.unsigned": "the report carries no signature (SIGNING_KEY 7)",
            "snp.report.unsupported_signature_algorithm": "the report is not ECDSA P-384",
            "snp.report.unsupported_version": "the report version is not supported",
            "snp.report.product_mismatch": "the report's CPUID names another product",
            "snp.report.report_data_mismatch": "REPORT_DATA is not the expected value",
            "snp.report.unknown_product": "the product cannot be determined from the report",
            "snp.vcek.chip_id_mismatch": "the VCEK's hwID is not the report's CHIP_ID",
            "snp.vcek.kind_mismatch": "the signing key kind (VCEK/VLEK) is not the report's",
            "snp.vcek.missing_extension": "the VCEK lacks a required AMD extension",
            "snp.vcek.product_mismatch": "the VCEK's product is not the report's",
            "snp.vcek.tcb_mismatch": "the VCEK's TCB extensions are not the report's TCB",
            "snp.vcek.unsupported_key": "the VCEK/VLEK key is not EC P-384",
        },
    ),
    **_group(
        "snp",
        {"snp.collateral.vcek_missing": "no VCEK supplied and none cached"},
    ),
    # -- TDX ------------------------------------------------------------------------------
    **_group(
        "verify (Rust), tdx",
        {
            "tdx.ccel.invalid_mr_index": "a CCEL event names an MR index outside RTMR0-3",
            "tdx.ccel.missing_digest": "a CCEL event lacks its SHA-384 digest",
            "tdx.ccel.no_sha384": "the CCEL declares no SHA-384 bank",
            "tdx.ccel.replay_mismatch": "the replayed CCEL disagrees with the quote's RTMRs",
            "tdx.pck.key_invalid": "the PCK certificate's key is not a valid P-256 key",
            "tdx.qe.binding_mismatch": "the QE report does not bind the attestation key",
            "tdx.qe.signature_invalid": "the QE report signature does not verify with the PCK",
            "tdx.quote.signature_invalid": "the quote signature does not verify",
            "tdx.quote.unsupported_qe_vendor": "the QE vendor is not Intel",
        },
    ),
    **_group(
        "tdx",
        {
            "tdx.collateral.chain_invalid": "the TCB signing chain does not verify",
            "tdx.collateral.crl_issuer_mismatch": "a CRL is not issued by the expected CA",
            "tdx.collateral.crl_missing": "no PCK CRL supplied",
            "tdx.collateral.expired": "collateral is past its nextUpdate",
            "tdx.collateral.fmspc_mismatch": "TCB info is for another FMSPC",
            "tdx.collateral.invalid": "collateral is malformed",
            "tdx.collateral.missing": "no TDX collateral for the platform's FMSPC",
            "tdx.collateral.not_yet_valid": "collateral is issued later than the verification time",
            "tdx.collateral.pceid_mismatch": "TCB info is for another PCE-ID",
            "tdx.collateral.revoked": "the TCB signing certificate is revoked",
            "tdx.collateral.signature_invalid": "a TCB info or QE identity signature fails",
            "tdx.collateral.stale": "collateral is older than the accepted age",
            "tdx.collateral.unsupported": "a collateral id or version is not supported",
            "tdx.pck.chain_invalid": "the PCK certificate chain is unreadable or does not verify",
            "tdx.pck.expired": "a PCK chain certificate is outside its validity period",
            "tdx.pck.revoked": "the PCK certificate is on the PCK CRL",
            "tdx.qe.identity_mismatch": "the QE does not match the QE identity",
            "tdx.qe.revoked": "the QE's ISVSVN is revoked",
            "tdx.quote.report_data_mismatch": "REPORTDATA is not the expected value",
            "tdx.root.invalid": "a configured Intel root is not a certificate",
            "tdx.tcb.no_matching_level": "the platform matches no TCB level",
            "tdx.tcb.revoked": "the platform TCB level is Revoked",
            "tdx.tcb.tdx_module_mismatch": "MRSIGNERSEAM differs from the TDX module identity",
        },
    ),
    # -- X.509, trust store, collateral fetching -------------------------------------------
    **_group(
        "pki (verify crate; each platform maps these to its own codes)",
        {
            "x509.chain.algorithm_not_allowed": "a certificate is signed with an algorithm "
            "its vendor's hierarchy does not use",
            "x509.chain.bad_key": "an issuer key is unusable or not what the vendor profile "
            "requires",
            "x509.chain.expired": "a certificate in the chain has expired",
            "x509.chain.key_usage": "an issuer's keyUsage does not allow certificate signing",
            "x509.chain.no_anchors": "no trust anchor is configured",
            "x509.chain.no_issuer": "no trusted or supplied certificate issued a certificate",
            "x509.chain.not_ca": "an issuer is not a CA certificate",
            "x509.chain.not_yet_valid": "a certificate in the chain is not valid yet",
            "x509.chain.path_len_exceeded": "an issuer's pathLenConstraint is exceeded",
            "x509.chain.signature_invalid": "a certificate or CRL signature does not verify",
            "x509.chain.too_long": "no trust anchor within the profile's depth",
            "x509.chain.unsupported_algorithm": "a signature algorithm or its parameters "
            "are not ones sealgate verifies",
            "x509.chain.untrusted_root": "the chain ends at a self-signed root that is not trusted",
            "x509.crl.algorithm_not_allowed": "a CRL is signed with an algorithm its vendor's "
            "hierarchy does not use",
            "x509.crl.expired": "a CRL is not current at the verification time",
            "x509.crl.key_usage": "the CRL issuer's keyUsage does not allow CRL signing",
            "x509.crl.signature_invalid": "a CRL signature does not verify",
            "x509.crl.unsupported_algorithm": "a CRL signature algorithm is not one sealgate "
            "verifies",
            "x509.crl.wrong_issuer": "a CRL is not issued by the expected CA",
        },
    ),
    **_group(
        "trust",
        {
            "trust.import.unpinned": "an imported root is not one of the pinned roots",
            "trust.usage.bad_platform": "the trust store was asked for an unknown platform",
        },
    ),
    **_group(
        "protocol",
        {
            "gpu.evidence.too_many": "more GPU reports than one evidence set may carry",
            "node.gpu.nvml_failed": "NVML failed or returned an out-of-bounds GPU report/chain",
            "gpu.rim.mismatch": "a GPU measurement differs from every RIM alternative",
        },
    ),
    **_group(
        "collateral",
        {
            "collateral.cache.bad_path": "a cache path component is unsafe",
            "collateral.cache.too_large": "a cached file exceeds the size cap",
            "collateral.cache.unreadable": "a cached file cannot be read",
            "collateral.fetch.bad_redirect": "a redirect leaves http(s)",
            "collateral.fetch.bad_response": "a vendor service answer is not in its documented "
            "form (NVIDIA RIM JSON) or its digest differs",
            "collateral.fetch.bad_url": "only http(s) URLs are fetched",
            "collateral.fetch.http_error": "the vendor service answered an HTTP error",
            "collateral.fetch.missing_header": "a required response header is missing",
            "collateral.fetch.not_found": "the vendor service has no such object (HTTP 404)",
            "collateral.fetch.too_large": "the response exceeds the size cap",
            "collateral.fetch.unreachable": "the vendor service cannot be reached",
        },
    ),
    # -- Appraisal -------------------------------------------------------------------------
    **_group(
        "appraise",
        {
            "policy.document.invalid": "a policy document is malformed",
            "policy.document.no_measurement": "a policy constrains no measurement",
            "policy.gpu.driver_not_allowed": "a GPU's driver version is not allowed",
            "policy.gpu.measurement_mismatch": "a GPU measurement differs from its RIM",
            "policy.gpu.no_versions": (
                "a GPU policy names no driver, VBIOS or NVSwitch VBIOS version"
            ),
            "policy.gpu.not_compared": (
                "a GPU's or NVSwitch's measurements were not compared with RIMs"
            ),
            "policy.gpu.not_ppcie": (
                "the policy requires protected PCIe but a GPU is not in protected-PCIe mode"
            ),
            "policy.gpu.not_verified": "a GPU's evidence did not verify",
            "policy.gpu.ppcie_forbidden": (
                "protected-PCIe GPUs or NVSwitch evidence under a policy that forbids them"
            ),
            "policy.gpu.revocation_unchecked": ("a GPU's or NVSwitch's revocation was not checked"),
            "policy.gpu.switch_not_verified": "an NVSwitch's evidence did not verify",
            "policy.gpu.switch_vbios_not_allowed": "an NVSwitch's VBIOS version is not allowed",
            "policy.gpu.too_few": "fewer GPUs attested than the policy requires",
            "policy.gpu.too_few_switches": "fewer NVSwitches attested than the policy requires",
            "policy.gpu.topology": (
                "the GPU/NVSwitch set repeats a device or its topology is inconsistent"
            ),
            "policy.gpu.vbios_not_allowed": "a GPU's VBIOS version is not allowed",
            "policy.platform.not_allowed": "the policy does not allow the evidence's platform",
            "policy.snp.debug_enabled": "the SNP guest policy allows debugging",
            "policy.snp.host_data_mismatch": "HOST_DATA is not an accepted value",
            "policy.snp.measurement_mismatch": "MEASUREMENT is not an accepted value",
            "policy.snp.product_not_allowed": "the product line is not allowed",
            "policy.snp.tcb_too_old": "a reported TCB component is below the minimum",
            "policy.snp.vmpl_not_allowed": "the report comes from a VMPL that is not allowed",
            "policy.snp.no_measurement": "the policy constrains no SNP measurement",
            "policy.snp.no_reference_values": "the named reference sets hold no SNP values",
            "policy.tdx.debug_enabled": "the TD attributes allow debugging",
            "policy.tdx.mr_td_mismatch": "MRTD is not an accepted value",
            "policy.tdx.mr_config_id_mismatch": "MRCONFIGID is not an accepted value",
            "policy.tdx.rtmr_mismatch": "an RTMR is not an accepted value",
            "policy.tdx.tcb_status_not_allowed": "the TCB status is not allowed",
            "policy.tdx.no_measurement": "the policy constrains no TDX MRTD or RTMR",
            "policy.tdx.no_reference_values": "the named reference sets hold no TDX values",
            "policy.tpm.ek_ca_not_allowed": "the EK does not chain to an allowed EK CA",
            "policy.tpm.pcr_mismatch": "a PCR value is not an accepted value",
            "policy.tpm.pcr_missing": "a PCR the policy constrains is not in the quote",
            "policy.tpm.selection_missing": "the quote does not cover the policy's PCRs",
            "policy.tpm.weak_hash": "the policy expects SHA-1 PCRs but weak hashes are refused",
            "policy.tpm.no_measurement": "the policy constrains no PCR",
            "policy.tpm.no_reference_values": "the named reference sets hold no PCR values",
        },
    ),
    **_group(
        "appraise.azure",
        {
            "policy.azure.tcb_not_evaluated": "the TD quote came without collateral, so its "
            "TCB status was not evaluated, and the policy does not accept that",
            "policy.azure.vm_configuration.console_enabled": "vm-configuration console-enabled "
            "is not the required value (or absent)",
            "policy.azure.vm_configuration.secure_boot": "vm-configuration secure-boot is not "
            "the required value (or absent)",
            "policy.azure.vm_configuration.tpm_enabled": "vm-configuration tpm-enabled is not "
            "the required value (or absent)",
            "policy.azure.vm_configuration.tpm_persisted": "vm-configuration tpm-persisted is "
            "not the required value (or absent)",
            "policy.azure.vm_configuration.vm_unique_id": "the vmUniqueId is not one the policy "
            "accepts",
            "service.azure.platform_mismatch": "the HCL report holds the other Azure platform's "
            "hardware report than the challenge was issued for",
            "service.azure.quote_missing": "Azure evidence without the vTPM quote (the service "
            "never grants on the HCL report alone)",
        },
    ),
    # -- Broker ----------------------------------------------------------------------------
    **_group(
        "broker",
        {
            "broker.hpke.bad_private_key": "an HPKE private key has the wrong size",
            "broker.hpke.bad_public_key": "the runtime public key has the wrong size",
            "broker.hpke.low_order_key": "the X25519 runtime key is of small order",
            "broker.hpke.no_private_parts": "an HPKE key pair has no serializable parts",
            "broker.hpke.open_failed": "a sealed key does not open",
            "broker.hpke.unsupported_suite": "the HPKE suite is unknown",
            "broker.audit_keys.missing": "MAC'd audit entries but no stored audit keys, and no"
            " file KEK to derive them from",
            "broker.kek.ambiguous": "more than one token or KEK object matches the URI",
            "broker.kek.bad_size": "the KEK file has the wrong size",
            "broker.kek.hsm_error": "the PKCS#11 module or token failed an operation",
            "broker.kek.login_failed": "logging in to the PKCS#11 token failed (wrong PIN)",
            "broker.kek.missing": "no KEK file, or no KEK object in the token",
            "broker.kek.module_unavailable": "the PKCS#11 module cannot be found or loaded",
            "broker.kek.pin_in_uri": "a PKCS#11 URI carries the PIN (pin-value)",
            "broker.kek.pin_source_invalid": "pin-source is not a file: path",
            "broker.kek.pin_unreadable": "the PIN file cannot be read or is empty",
            "broker.kek.rotation_stalled": "items kept changing while being re-wrapped",
            "broker.kek.token_not_found": "no PKCS#11 token or module matches the URI",
            "broker.kek.unknown": "an item is wrapped under a KEK that is not configured",
            "broker.kek.unsafe_key": "the KEK object could leave the token or is not AES-256",
            "broker.kek.unsafe_permissions": "the KEK or PIN file is accessible by others",
            "broker.kek.unwrap_failed": "a wrapped key does not unwrap with the KEK",
            "broker.kek.uri_invalid": "the KEK URI is malformed or unsupported",
            "broker.key.bad_id": "a model key id is malformed",
            "broker.key.bad_size": "model key material has the wrong size",
            "broker.key.not_found": "no model key with that id",
            "broker.key.not_granted": "the key was not granted at Attest",
            "broker.token.bad_ttl": "the token lifetime is out of range",
            "broker.token.expired": "the release token has expired",
            "broker.token.invalid": "the release token is rejected",
            "broker.token.key_mismatch": "the runtime key is not the one the token binds",
            "broker.token.key_retired": "the token's signing key is retired",
            "broker.token.malformed": "the release token is not a JWT",
            "broker.token.no_key": "no active token signing key",
            "broker.token.record_mismatch": "the token does not match its attestation record",
            "broker.token.unknown": "the token names no attestation",
            "broker.token.unknown_key": "the token is not signed by a sealgate key",
        },
    ),
    **_group(
        "broker.audit, broker.checkpoint, verify (Rust)",
        {
            "audit.chain.bad_anchor": "the chain's anchor hash has the wrong size",
            "audit.chain.empty": "the log is empty but a checkpoint exists",
            "audit.chain.hash_mismatch": "a stored entry hash differs from the recomputed chain",
            "audit.chain.head_mismatch": "the checkpointed entry no longer has its hash",
            "audit.chain.missing_entry": "hashes and entries differ in number",
            "audit.chain.missing_hash": "an entry has no stored hash",
            "audit.chain.sequence_gap": "entry sequence numbers are not consecutive",
            "audit.chain.truncated": "the log is shorter than the last checkpoint",
            "audit.checkpoint.bad_key": "a checkpoint verifier key is malformed",
            "audit.checkpoint.bad_signature": "a checkpoint signature does not verify",
            "audit.checkpoint.malformed": "a checkpoint file is malformed",
            "audit.checkpoint.missing": "no checkpoint anchors the chain's head",
            "audit.checkpoint.unreadable": "a checkpoint file cannot be read",
            "audit.entry.bad_mac": "an entry's MAC does not match its content",
            "audit.entry.unauthenticated": "an entry lacks a MAC where earlier entries have one",
        },
    ),
    # -- Service ---------------------------------------------------------------------------
    **_group(
        "service",
        {
            "admin.node.not_found": "no such node",
            "admin.policy.not_found": "no policy for that key id",
            "admin.refval.bad_document": "a reference-value document is malformed",
            "admin.refval.bad_platform": "a reference value names an unknown platform",
            "admin.refval.bad_value": "a reference value is not hex of the right size",
            "admin.refval.incomplete": "a reference value lacks its set or name",
            "admin.revocation.bad_identity": "a revocation names a malformed identity",
            "admin.revocation.not_found": "the identity is not revoked",
            "attest.challenge.invalid": "the challenge is unknown, used or expired",
            "attest.challenge.node_mismatch": "the challenge was issued to another node",
            "attest.challenge.platform_mismatch": "the challenge was issued for another platform",
            "attest.identity.missing": "verified evidence names no hardware identity",
            "attest.identity.revoked": "the hardware identity is revoked",
            "auth.key.unsupported": "an operator key is not P-256 or Ed25519",
            "auth.role.denied": "the operator lacks the role the call needs",
            "auth.token.expired": "the bearer token has expired",
            "auth.token.invalid": "the bearer token is rejected",
            "auth.token.lifetime": "the bearer token lives longer than allowed",
            "auth.token.malformed": "the authorization header is not 'Bearer <jwt>'",
            "auth.token.missing": "no bearer token",
            "auth.token.unknown_key": "the bearer token is not signed by a trusted key",
            "config.database.invalid": "the database URL is malformed or unsupported",
            "config.database.password_in_argv": "a database password given on the command line",
            "config.insecure_listen": "a non-loopback listener without TLS",
            "config.invalid": "the service configuration is invalid",
            "config.operator_key": "an operator key in the configuration is unusable",
            "config.unreadable": "the configuration file cannot be read",
            "policy.key.no_policy": "the model key has no policy",
            "service.internal.error": "an unexpected error (logged with a reference)",
            "service.limits.chain_too_long": "too many EK CA certificates in a request",
            "service.limits.event_log_too_large": "the event log exceeds its size limit",
            "service.limits.evidence_too_large": "the evidence exceeds its size limit",
            "service.limits.peer_busy": "too many concurrent calls from one address",
            "service.limits.request_timeout": "the request message did not arrive in time",
            "service.limits.server_busy": "too many open streams",
            "service.limits.too_many_keys": "too many key ids in one request",
            "service.limits.too_many_pcrs": "too many PCR values in one request",
            "service.listen.failed": "the HTTP side port cannot listen",
            "service.platform.unavailable": "the evidence's platform is not enabled",
            "service.rate_limited": "the node exceeds its request rate",
            "service.request.malformed": "the request is malformed",
            "service.request.no_evidence": "the request carries no evidence",
            "service.request.no_keys": "the request asks for no key id",
        },
    ),
    **_group(
        "storage",
        {
            "storage.closed": "the storage is closed",
            "storage.constraint": "a write violates a database constraint (duplicate key)",
            "storage.migrate.same_database": "migrate source and target are one database",
            "storage.migrate.target_not_empty": "the migrate target already holds data",
            "storage.migrate.verify_failed": "the migrated copy does not match its source",
            "storage.model_key.bad_version": "a model key version is not the next one",
            "storage.model_key.exists": "the model key version exists",
            "storage.model_key.not_found": "no such model key",
            "storage.reference_value.exists": "the reference value exists",
            "storage.not_found": "the database to open does not exist",
            "storage.schema.too_new": "the database schema is newer than this sealgate",
            "storage.unavailable": "the database cannot be reached; nothing was committed",
            "storage.value.invalid": "a value cannot be stored (a NUL character in text)",
        },
    ),
    # -- Model signatures (OMS v1.0) -------------------------------------------------------
    **_group(
        "oms.verify",
        {
            "model.signature.bad_time": "the verification time has no timezone",
            "model.signature.certificate_expired": "a certificate of the signing chain had "
            "expired at the verification (or signing) time",
            "model.signature.certificate_not_yet_valid": "a certificate of the signing chain "
            "was not yet valid at the verification time",
            "model.signature.certificate_usage": "the signing certificate may not sign code "
            "(keyUsage / extendedKeyUsage)",
            "model.signature.chain_invalid": "the signing certificate chain does not verify",
            "model.signature.duplicate_key": "the bundle or its payload repeats a JSON key",
            "model.signature.identity_mismatch": "the Sigstore certificate is not for the "
            "required identity (SAN)",
            "model.signature.issuer_mismatch": "the Sigstore certificate's OIDC issuer is not "
            "the required one",
            "model.signature.key_mismatch": "the key or key hint in the bundle is not the "
            "configured key",
            "model.signature.legacy_encoding": "the signature verifies only over model_signing "
            "v0.2's DSSE encoding (needs allow_legacy)",
            "model.signature.legacy_format": "a pre-v1.0 predicate or bundle version (needs "
            "allow_legacy)",
            "model.signature.malformed": "the bundle is not a well-formed Sigstore bundle with "
            "a DSSE envelope",
            "model.signature.no_certificate": "the signer needs a certificate the bundle does "
            "not carry",
            "model.signature.no_signers": "no signer was configured to verify against",
            "model.signature.no_signing_time": "no verified signing time (tlog SET or RFC 3161 "
            "timestamp)",
            "model.signature.payload_type": "the DSSE payload type is not in-toto JSON",
            "model.signature.predicate_type": "the statement's predicate is not an OMS model "
            "signature",
            "model.signature.sct_invalid": "the Fulcio certificate's embedded SCT does not verify",
            "model.signature.signature_invalid": "the DSSE signature does not verify",
            "model.signature.sigstore_invalid": "Sigstore verification failed (other reasons)",
            "model.signature.statement_invalid": "the in-toto statement or its OMS predicate "
            "is malformed",
            "model.signature.subject_mismatch": "the statement's subject digest is not the "
            "root digest of its resources",
            "model.signature.tlog_invalid": "the Rekor entry (inclusion proof, checkpoint, SET) "
            "does not verify or does not match the bundle",
            "model.signature.tlog_missing": "the bundle has no transparency-log entry",
            "model.signature.too_deep": "the bundle or payload JSON nests too deeply",
            "model.signature.too_large": "the bundle, payload or resource list is too large",
            "model.signature.trust_root_invalid": "the Sigstore trusted_root.json is unusable",
            "model.signature.unsupported_bundle": "the bundle media type or content kind is "
            "not supported",
            "model.signature.unsupported_key": "the signing key is not ECDSA P-256/P-384/P-521",
            "model.signature.untrusted_certificate": "the signing chain does not reach a "
            "configured CA",
            "model.signer.invalid": "a configured signer (key, CA, identity) is malformed",
        },
    ),
    # -- Model files -----------------------------------------------------------------------
    **_group(
        "modelfile",
        {
            "model.file.bad_chunk_size": "the chunk size is out of range",
            "model.file.bad_header": "the header is not valid CBOR",
            "model.file.chunk_invalid": "a chunk fails authentication",
            "model.file.not_sealgate": "not a sealgate model file",
            "model.file.too_large": "too many chunks for one file key",
            "model.file.truncated": "the file ends inside the header or a chunk",
            "model.key.bad_size": "a model key has the wrong size",
            "model.key.missing": "the key to decrypt with is not in the keys directory",
        },
    ),
    # -- Model manifests (OMS v1.0) --------------------------------------------------------
    **_group(
        "oms.manifest",
        {
            "model.manifest.bad_ignore_path": "an ignore path is absolute, leaves the model or "
            "holds a glob character",
            "model.manifest.bad_name": "a file name is not valid UTF-8 or is too long",
            "model.manifest.bad_parameters": "the serialization parameters are malformed or "
            "unsupported",
            "model.manifest.bad_resource": "a resource name or digest is malformed",
            "model.manifest.changed": "a file changed size while it was hashed",
            "model.manifest.digest_mismatch": "a file's digest differs from the signed one",
            "model.manifest.duplicate_resource": "the signed manifest lists a resource twice",
            "model.manifest.empty": "the model holds no file to hash after exclusions",
            "model.manifest.extra_file": "a file is present but not in the signed manifest",
            "model.manifest.missing_file": "a signed file is absent",
            "model.manifest.not_regular": "a FIFO, socket or device is in the model",
            "model.manifest.parameters_mismatch": "the model was hashed with other serialization "
            "parameters than the signed ones",
            "model.manifest.symlink": "a symbolic link is refused, dangling, or leaves the model",
            "model.manifest.too_deep": "directories are nested deeper than allowed",
            "model.manifest.too_many_files": "the model holds more files than allowed",
            "model.manifest.too_many_resources": "the shard size makes more resources than allowed",
            "model.manifest.unreadable": "a file or directory of the model cannot be read",
        },
    ),
    # -- Node agent ------------------------------------------------------------------------
    **_group(
        "node",
        {
            "node.enroll.unsupported": "the platform does not enroll",
            "node.tpm.no_tools": "tpm2-tools are not installed",
            "node.tsm.bad_auxblob": "the certificate table holds a non-X.509 entry",
            "node.tsm.bad_generation": "configfs-tsm reports a malformed generation",
            "node.tsm.bad_report_data": "report_data has the wrong size",
            "node.tsm.empty": "configfs-tsm returned an empty report",
            "node.tsm.generation_changed": "another writer changed the request during the read",
            "node.tsm.io": "a configfs-tsm file cannot be read or written",
            "node.tsm.platform": "configfs-tsm serves only SNP and TDX",
            "node.tsm.too_large": "a configfs-tsm blob exceeds the size cap",
            "node.tsm.unavailable": "no configfs-tsm on this machine",
            "node.tsm.wrong_provider": "configfs-tsm is provided by another platform",
        },
    ),
    **_group(
        "node.azure",
        {
            "node.azure.binding": "the user data to write is not 64 bytes",
            "node.azure.imds_failed": "IMDS (TD quote provider or THIM) failed or answered "
            "something unusable",
            "node.azure.no_ak": "no HCL attestation key at its persistent handle",
            "node.azure.platform": "not an Azure platform",
            "node.azure.report_stale": "the HCL report did not carry this challenge's user "
            "data within the bounded retries",
            "node.azure.retries": "report retry settings out of range",
            "node.azure.wrong_platform": "the VM's HCL report is of the other Azure platform",
        },
    ),
    # -- CLI -------------------------------------------------------------------------------
    **_group(
        "cli",
        {
            "cli.admin.no_token": "an admin command has no token or operator key",
            "cli.audit.no_database": "no database to audit",
            "cli.audit.no_key": "no KEK and no checkpoint key to check checkpoints with",
            "cli.input.bad_json": "an input file is not the JSON expected",
            "cli.input.not_utf8": "an input file is not UTF-8",
            "cli.input.too_large": "an input file exceeds its size cap",
            "cli.input.unreadable": "an input file cannot be read",
            "cli.internal.error": "an unexpected error (last-resort JSON)",
            "cli.key.bad_file": "a key file is not 32 raw bytes or 64 hex characters",
            "cli.node.session_expired": "the node session's token has expired",
            "cli.node.session_malformed": "the node session file is malformed",
            "cli.node.session_missing": "the node session file cannot be read",
            "cli.node.session_mode": "the node session file is readable by others",
            "cli.node.session_too_large": "the node session file exceeds its size cap",
            "cli.node.stdout_one_key": "'--out -' needs exactly one granted key",
            "cli.output.unwritable": "an output file cannot be written",
            "cli.serve.port_zero": "several workers need a fixed listen port",
            "cli.usage.bad_age": "--max-collateral-age is out of range",
            "cli.usage.bad_batch": "--batch is out of range",
            "cli.usage.bad_ca": "the PCK CA is not platform or processor",
            "cli.usage.bad_nonce": "--nonce is not hex",
            "cli.usage.bad_product": "the SNP product is unknown",
            "cli.usage.bad_report_data": "report_data is malformed or longer than 64 bytes",
            "cli.usage.bad_selection": "a PCR selection is malformed",
            "cli.usage.bad_time": "a verification time is malformed or has no time zone",
            "cli.usage.bad_user_data": "the expected user data is not hex or longer than 64 bytes",
            "cli.usage.bad_version": "a driver/VBIOS version, project or SKU is malformed",
            "cli.usage.conflict": "arguments that exclude each other are given together",
            "cli.usage.masked_chip_id": "the CHIP_ID is masked; no VCEK can be derived",
            "cli.usage.missing": "arguments that go together are not all given",
            "cli.usage.not_vcek": "the report is not VCEK-signed; KDS serves VCEKs only",
            "cli.usage.product_required": "the report does not name its product; pass --product",
        },
    ),
    # -- Release gate for signed models ----------------------------------------------------
    **_group(
        "release gate (appraisal, broker, service)",
        {
            "policy.model.bad_signer": "a model signer in a policy is unusable",
            "policy.model.binding_missing": "the evidence does not commit to the model's root "
            "digest (attested_binding)",
            "policy.model.invalid": "the policy's model section requires nothing",
            "policy.model.no_signers": "a policy requires a signed model but allows no signer",
            "policy.model.not_registered": "no signed model is registered for the key version",
            "policy.model.registration_invalid": "a stored registration does not match its bundle",
            "policy.model.signer_not_allowed": "the current policy does not accept the "
            "registered model's signer",
            "admin.model.no_policy": "a model is registered for a key without a policy",
            "admin.model.no_signature": "a model registration carries no signature bundle",
            "admin.model.not_required": "the key's policy has no model section",
            "admin.model.signature_too_large": "the signature bundle exceeds its size limit",
            "admin.model.version_bound": "the key version is bound to another model",
            "broker.token.model_changed": "the token was issued for another key version or model",
            "model.binding.bad_digest": "a root digest has the wrong size",
            "model.file.model_mismatch": "a model file is encrypted for another model",
            "node.tpm.eventlog_unreadable": "the node's event log cannot be read",
            "node.tpm.eventlog_unsupported": "the node's event log has no crypto-agile bank",
            "node.tpm.pcrextend_failed": "tpm2_pcrextend failed",
            "node.model.root_mismatch": "a granted key is bound to another model than the "
            "node's signature",
            "cli.input.not_regular": "a model directory holds a symlink or special file",
            "cli.output.exists": "the output directory exists",
            "cli.usage.bad_model_binding": "--extend-model-pcr lacks what it needs",
            "cli.usage.bad_output": "--out - cannot take this input",
            "cli.usage.bad_root_digest": "--root-digest is not 64 hex characters",
            "cli.usage.model_without_signature": "--model is given without --model-signature",
        },
    ),
    # -- NVIDIA GPU reference values (RIMs) and OCSP revocation -----------------------------
    **_group(
        "NVIDIA GPU RIMs (sealgate.nvgpu.rim)",
        {
            "gpu.rim.too_large": "a RIM exceeds the size cap",
            "gpu.rim.malformed": "a RIM is not a well-formed SWID tag (XML, DOCTYPE/entities, "
            "depth, Resource fields, digests)",
            "gpu.rim.no_signer": "the RIM signature's KeyInfo carries no usable signer certificate",
            "gpu.rim.signature_invalid": "the RIM's XML signature or reference digest does not "
            "verify (enveloped, C14N 1.1, ECDSA-SHA384)",
            "gpu.rim.untrusted": "the RIM signer chain does not lead to the pinned NVIDIA RIM root",
            "gpu.rim.not_valid_at": "a RIM signer certificate is expired or not yet valid at "
            "the verification time",
            "gpu.rim.not_found": "no RIM is available for the report's driver or VBIOS version",
            "gpu.rim.wrong_kind": "a driver RIM was given where a VBIOS RIM was expected, or "
            "the reverse",
            "gpu.rim.index_overlap": "the driver and VBIOS RIMs both claim a measurement index",
            "gpu.rim.mismatch": "an active measurement equals none of the RIM's alternatives",
        },
    ),
    **_group(
        "NVIDIA GPU OCSP (sealgate.nvgpu.ocsp)",
        {
            "gpu.ocsp.malformed": "an OCSP response cannot be parsed or is not successful",
            "gpu.ocsp.too_large": "an OCSP response or the response list exceeds its cap",
            "gpu.ocsp.signature_invalid": "an OCSP response is not signed by the issuer or a "
            "delegated responder it certified (id-kp-OCSPSigning)",
            "gpu.ocsp.missing": "no OCSP response covers a certificate of the chain",
            "gpu.ocsp.stale": "an OCSP response is outside its thisUpdate..nextUpdate window",
            "gpu.ocsp.revoked": "a certificate of the chain is revoked",
            "gpu.ocsp.unknown": "the responder does not know a certificate of the chain",
        },
    ),
}

#: Retired spellings → the code that names the same condition now.
RENAMED: dict[str, str] = {
    # Enrollment's AK check reported what the quote path calls not_restricted_signing.
    "tpm.ak.not_restricted": "tpm.ak.not_restricted_signing",
    # verify tdx said bad_hex where verify snp says bad_report_data for a non-hex --report-data.
    "cli.usage.bad_hex": "cli.usage.bad_report_data",
}

#: Audit-log entry kinds (broker/audit.py): stable names, but records, not errors.
AUDIT_EVENTS: dict[str, str] = {
    "admin.identity.lifted": "an operator lifted a hardware identity's revocation",
    "admin.identity.revoked": "an operator revoked a hardware identity",
    "admin.key.created": "an operator created a model key",
    "admin.key.rotated": "an operator rotated a model key",
    "admin.model.refused": "a model registration was refused (its signature does not verify)",
    "admin.model.registered": "an operator bound a signed model to a key version",
    "admin.node.forgotten": "an operator forgot a node",
    "admin.node.revoked": "an operator revoked a node",
    "admin.policy.deleted": "an operator deleted a policy",
    "admin.policy.put": "an operator stored a policy",
    "admin.refval.added": "an operator added reference values",
    "admin.refval.removed": "an operator removed a reference value",
    "admin.signing_key.rotated": "an operator rotated the token signing key",
    "attest.decided": "an attestation was appraised",
    "attest.denied": "an attestation was denied",
    "attest.refused": "an attestation was refused before appraisal",
    "challenge.issued": "a challenge was issued",
    "kek.rotation.completed": "kek rotate moved every stored key to the target KEK",
    "kek.rotation.failed": "kek rotate stopped with an error (counts so far)",
    "kek.rotation.started": "kek rotate began moving stored keys to another KEK",
    "enroll.challenged": "a TPM enrollment was challenged",
    "enroll.completed": "a TPM enrollment completed",
    "enroll.failed": "a TPM enrollment failed",
    "enroll.refused": "a TPM enrollment was refused",
    "key.refused": "a key release was refused",
    "key.released": "a key was released",
    "service.started": "the service started",
    "signing_key.created": "the first token signing key of a deployment was made",
}


def markdown() -> str:
    """docs/errors.md: the catalogue as a table per component."""
    lines = [
        "# Error codes",
        "",
        "Generated from `python/sealgate/codes.py` (`python -m sealgate.codes > docs/errors.md`);",
        "`tests/test_codes.py` checks it is current. Every failure carries one of these codes",
        '(README, "CLI"); the meaning of a code never changes.',
        "",
    ]
    by_component: dict[str, list[str]] = {}
    for code in sorted(CODES):
        by_component.setdefault(code.split(".", 1)[0], []).append(code)
    for component, codes in by_component.items():
        lines += [f"## {component}", "", "| code | meaning | produced by |", "|---|---|---|"]
        lines += [f"| `{c}` | {CODES[c].meaning} | {CODES[c].producer} |" for c in codes]
        lines.append("")
    lines += ["## Retired spellings", "", "| old | now |", "|---|---|"]
    lines += [f"| `{old}` | `{new}` |" for old, new in sorted(RENAMED.items())]
    lines += ["", "## Audit entry kinds (not errors)", "", "| kind | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {m} |" for k, m in sorted(AUDIT_EVENTS.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
