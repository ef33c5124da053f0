"""How close names are to reference names: corpus chrF, as sacrebleu computes it."""

from __future__ import annotations

from collections import Counter


def _char_ngrams(text: str, n: int) -> Counter:
    text = "".join(text.split())
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(hypotheses: list[str], references: list[str], *, order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF (0-100) as sacrebleu computes it by default.

    Character n-grams of orders 1..`order`, whitespace removed; matches and counts summed over the
    corpus per order; precision and recall averaged over the orders that have n-grams on both sides;
    then the F-score weighting recall `beta` times as much as precision.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"chrf: {len(hypotheses)} hypotheses but {len(references)} references")
    totals = [[0, 0, 0] for _ in range(order)]  # per order: hypothesis n-grams, reference n-grams, matches
    for hypothesis, reference in zip(hypotheses, references):
        for n in range(1, order + 1):
            hyp, ref = _char_ngrams(hypothesis, n), _char_ngrams(reference, n)
            totals[n - 1][0] += sum(hyp.values())
            totals[n - 1][1] += sum(ref.values())
            totals[n - 1][2] += sum((hyp & ref).values())
    precisions = [m / h for h, r, m in totals if h > 0 and r > 0]
    recalls = [m / r for h, r, m in totals if h > 0 and r > 0]
    if not precisions:
        return 0.0
    precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0
    factor = beta**2
    return 100.0 * (1 + factor) * precision * recall / (factor * precision + recall)
