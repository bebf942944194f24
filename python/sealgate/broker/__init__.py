"""The key broker: nonces, model keys, sealing, result tokens and the audit log.

Knows nothing of evidence formats (layers: docs/architecture.md): it is handed verified, appraised
decisions and turns them into nonces, sealed keys, tokens and audit entries. What it shares
with the node agent (the binding rule, HPKE suites) is in ``sealgate.protocol``.
"""
