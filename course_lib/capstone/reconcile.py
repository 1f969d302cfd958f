"""One family, several verdicts: a model's result in its own chapter beside its leaderboard result.

The same architecture can lose to the benchmark in its chapter and beat it on the board (or the
reverse), because the settings differ: window, features, epochs, seeds, training loss, the level
correction. :func:`reconciliation` puts the rows side by side with those settings, and
:func:`flips` says, for every family whose verdict changes, which settings differ, so a learner can
tell a contradiction from a change of protocol.

A verdict is the seed ensemble's Diebold-Mariano test on corrected QLIKE against the row's benchmark
at ``alpha``: ``better``, ``WORSE`` or ``n.s.`` (no significant difference).
"""

import numpy as np
import pandas as pd

SETTINGS = ("window", "features", "size", "epochs", "seeds", "loss", "correction", "benchmark")
RESULTS = ("QLIKE_lc", "DM", "p", "in_MCS")


def verdict(dm: float, p: float, alpha: float = 0.05) -> str:
    """``better`` / ``WORSE`` (a significant DM statistic below / above 0 at ``alpha``) or ``n.s.``."""
    if not (np.isfinite(dm) and np.isfinite(p)):
        return "n/a"
    return ("better" if dm < 0 else "WORSE") if p < alpha else "n.s."


def board_rows(table: pd.DataFrame, where: str, families: dict[str, str], **settings) -> list[dict]:
    """Rows of :func:`reconciliation` from a leaderboard table: ``families`` maps a family name to the
    table row that represents it; ``settings`` (window, epochs, seeds...) are those of the run."""
    missing = [row for row in families.values() if row not in table.index]
    if missing:
        raise KeyError(f"rows {missing} are not in the leaderboard table {list(table.index)}")
    out = []
    for family, row in families.items():
        r = table.loc[row]
        out.append(
            dict(settings, family=family, where=where, benchmark=table.attrs.get("benchmark"),
                 QLIKE_lc=float(r["QLIKE_lc"]), DM=float(r["ens DM_QLIKE"]), p=float(r["ens p_QLIKE"]),
                 in_MCS=bool(r["in_MCS"]))
        )  # fmt: skip
    return out


def reconciliation(rows: list[dict], alpha: float = 0.05) -> pd.DataFrame:
    """One row per (family, where): the settings, corrected QLIKE, the DM test and its verdict, MCS."""
    if not rows:
        raise ValueError("reconciliation needs at least one row")
    for i, r in enumerate(rows):
        missing = {"family", "where", *SETTINGS, *RESULTS} - set(r)
        if missing:
            raise KeyError(f"row {i} ({r.get('family')}, {r.get('where')}) lacks {sorted(missing)}")
    table = pd.DataFrame(rows).set_index(["family", "where"])
    table = table[[*SETTINGS, *RESULTS]]
    table["verdict"] = [verdict(d, p, alpha) for d, p in zip(table["DM"], table["p"], strict=True)]
    return table


def flips(table: pd.DataFrame) -> str:
    """One sentence per family whose verdict differs between its rows, naming the settings that differ;
    one sentence for the families whose verdict holds everywhere."""
    lines, steady = [], []
    for family, t in table.groupby(level="family", sort=False):
        verdicts = t["verdict"][t["verdict"] != "n/a"]
        if verdicts.nunique() < 2:
            steady.append(family)
            continue
        differ = [c for c in SETTINGS if t[c].astype(str).nunique() > 1]
        said = "; ".join(
            f"{where}: {v} against {t.loc[(family, where), 'benchmark']}"
            for (_, where), v in verdicts.items()
        )
        lines.append(
            f"{family}: the verdict changes ({said}); the settings that differ: {', '.join(differ) or 'none'}. "
            "Each verdict holds for its own settings only: a budget or protocol result, not a contradiction."
        )
    if steady:
        lines.append(f"The verdict holds in every setting shown for: {', '.join(steady)}.")
    return "\n".join(lines)
