"""The tables between rules: reading and validating them, the label text, the hierarchy, the split,
the submission file."""
