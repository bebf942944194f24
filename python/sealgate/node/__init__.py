"""Node (attester) side: evidence collection."""
