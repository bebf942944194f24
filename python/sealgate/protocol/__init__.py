"""What the node agent and the service share: the binding rule, the HPKE suites and the
``info`` of a key release (``sealgate.protocol.hpke``), the runtime key as a JWK and its
thumbprint, and the names of the platform and suite enums of the wire protocol.

Both sides import this module; neither imports the other's (README "gRPC API").
"""

from __future__ import annotations

import hashlib

from sealgate._proto import attestation_pb2, common_pb2
from sealgate.protocol.hpke import MLKEM768_X25519, X25519

#: The node binds its runtime key into the evidence as SHA-512(nonce ‖ runtime_public_key)
#: (README "gRPC API", Binding): all 64 bytes as SNP/TDX report_data, the first 32 as the
#: TPM quote's extraData; on Azure CVMs all 64 bytes as the HCL report's user data and the
#: first 32 as the vTPM quote's extraData.
BINDING_SIZE = 64
TPM_BINDING_SIZE = 32


def runtime_binding(nonce: bytes, runtime_public_key: bytes) -> bytes:
    return hashlib.sha512(nonce + runtime_public_key).digest()


#: Platform name (as used in policies, storage and the CLI) → wire enum.
PLATFORM_ENUM: dict[str, common_pb2.Platform.ValueType] = {
    "tpm": common_pb2.PLATFORM_TPM,
    "snp": common_pb2.PLATFORM_SNP,
    "tdx": common_pb2.PLATFORM_TDX,
    "azure-snp": common_pb2.PLATFORM_AZURE_SNP,
    "azure-tdx": common_pb2.PLATFORM_AZURE_TDX,
}
PLATFORM_NAMES: dict[int, str] = {v: k for k, v in PLATFORM_ENUM.items()}

#: Platform name → the ``Evidence`` oneof field carrying it (``azure-snp`` → ``azure_snp``),
#: and back.
EVIDENCE_FIELD: dict[str, str] = {p: p.replace("-", "_") for p in PLATFORM_ENUM}
EVIDENCE_PLATFORM: dict[str, str] = {f: p for p, f in EVIDENCE_FIELD.items()}

#: HPKE suite name → wire enum, and back; an unspecified suite means the default, X25519.
SUITE_ENUM: dict[str, attestation_pb2.HpkeSuite.ValueType] = {
    X25519: attestation_pb2.HPKE_SUITE_X25519_SHA256_AES256GCM,
    MLKEM768_X25519: attestation_pb2.HPKE_SUITE_MLKEM768X25519_SHA256_AES256GCM,
}
SUITE_NAMES: dict[int, str] = {
    attestation_pb2.HPKE_SUITE_UNSPECIFIED: X25519,
    **{v: k for k, v in SUITE_ENUM.items()},
}
