"""Combining labelers under the hierarchy: hallucination correction, the hard vote, the learned stack."""
