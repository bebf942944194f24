"""AMD SEV-SNP: attestation report verification (facade), AMD KDS collateral."""
