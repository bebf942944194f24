"""OpenSSF Model Signing (OMS v1.0): the model manifest, its hashing, signatures over it.

``sealgate.oms.manifest`` enumerates and hashes a model exactly as the OMS specification
(v1.0 §6) and its reference implementation ``model_signing`` do; the hashing itself runs in
the Rust core (``sealgate._core.model_hash``).
"""

from __future__ import annotations
