"""`sdn rank-report`: the mean human rank of each model, as in the paper's Table 2.

Smaller is better. The standard error of the mean is s.d. / sqrt(n) over the n answers that ranked
the model; the standard deviation is printed too, because the paper's "±" (e.g. 1.74 ± 0.77 over
5,000 captions) can only be one.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

from sdn.errors import UserError
from sdn.serve.ranking_db import CRITERIA, read_answers


def rank_table(answers: list[dict]) -> dict[str, list[dict]]:
    """criterion -> [{model, mean, sd, se, n}] sorted by mean rank (best first)."""
    ranks: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for a in answers:
        for model, rank in zip(a["models"], a["ranks"]):
            ranks[a["criterion"]][model].append(rank)
    table = {}
    for criterion, by_model in ranks.items():
        rows = []
        for model, values in by_model.items():
            n = len(values)
            mean = sum(values) / n
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
            rows.append({"model": model, "mean": mean, "sd": sd, "se": sd / math.sqrt(n), "n": n})
        table[criterion] = sorted(rows, key=lambda r: (r["mean"], r["model"]))
    return table


def format_report(answers: list[dict], source: str) -> str:
    if not answers:
        raise UserError(f"{source} holds no answers yet")
    model_sets = {tuple(sorted(a["models"])) for a in answers}
    if len(model_sets) > 1:  # ranks among 2 models and among 4 do not mean the same
        warnings.warn(f"{source} mixes answers over {len(model_sets)} different sets of models; their ranks are not comparable")
    raters = len({a["rater"] for a in answers})
    lines = [f"Human ranks from {source}: {len(answers)} answers by {raters} rater(s). Smaller is better.", ""]
    for criterion, rows in sorted(rank_table(answers).items(), key=lambda kv: list(CRITERIA).index(kv[0]) if kv[0] in CRITERIA else 99):
        lines += [f"{CRITERIA.get(criterion, criterion)} ({criterion})",
                  "| model | mean rank | ± s.e. | s.d. | answers |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['model']} | {r['mean']:.2f} | {r['se']:.2f} | {r['sd']:.2f} | {r['n']} |" for r in rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def rank_report(db: str) -> str:
    return format_report(read_answers(db), db)
