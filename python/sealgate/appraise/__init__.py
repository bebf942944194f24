"""Appraisal: verified claims + reference values + policy → verdict (layers: docs/architecture.md).

Policy is data (``sealgate.appraise.policy.Policy``), one per model key. Evaluation never
touches evidence bytes: one appraiser per platform (``appraise.tpm``, ``.snp``, ``.tdx``,
registered in ``evaluate.APPRAISERS``) reads that platform's typed claims, built from the
``claims`` of a ``VerifyResult`` (``sealgate.<platform>.claims``), and returns every
failure with a stable code (``sealgate.codes``) and the actual vs expected values, plus the
AR4SI trustworthiness vector (draft-ietf-rats-ar4si) for the EAR token.
"""

from __future__ import annotations

from sealgate.appraise.evaluate import Appraisal, PolicyFailure, appraise, ear_status
from sealgate.appraise.policy import Policy, parse_policy

__all__ = ["Appraisal", "Policy", "PolicyFailure", "appraise", "ear_status", "parse_policy"]
