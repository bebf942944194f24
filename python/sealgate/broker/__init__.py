"""The key broker: nonces, model keys, sealing, result tokens and the audit log.

Knows nothing of evidence formats (layers: docs/architecture.md): it is handed verified, appraised
decisions and turns them into nonces, sealed keys, tokens and audit entries.
"""

from __future__ import annotations

import hashlib

#: The node binds its runtime key into the evidence as SHA-512(nonce ‖ runtime_public_key)
#: (README "gRPC API"): all 64 bytes as SNP/TDX report_data, the first 32 as the
#: TPM quote's extraData.
BINDING_SIZE = 64
TPM_BINDING_SIZE = 32


def runtime_binding(nonce: bytes, runtime_public_key: bytes) -> bytes:
    return hashlib.sha512(nonce + runtime_public_key).digest()
