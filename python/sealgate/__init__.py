"""sealgate: remote-attestation verifier and key broker for confidential AI model serving."""

from sealgate._core import __version__

__all__ = ["__version__"]
