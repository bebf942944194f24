"""Test and demo helpers that play attesting nodes (software TPMs, synthetic evidence).

Shipped in the package because `make demo` and the benchmarks use them too; nothing here is
used by the verifier itself.
"""
