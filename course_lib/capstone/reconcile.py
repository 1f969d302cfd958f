"""One family, several verdicts: a model's result in its own chapter beside its leaderboard result.

The same architecture can lose to the benchmark in its chapter and beat it on the board (or the
reverse), because the settings differ: window, features, epochs, seeds, training loss, the level
correction. :func:`reconciliation` puts the rows side by side with those settings, and
:func:`flips` says, for every family whose verdict changes, which settings differ, so a learner can
tell a contradiction from a change of protocol.

A verdict is the seed ensemble's Diebold-Mariano test on corrected QLIKE against the row's benchmark
at ``alpha``, in the words of :func:`course_lib.evaluation.reference.verdict_word`: ``better``,
``worse`` or ``no significant difference``. :func:`chapter_rows` reads a chapter's committed
full-budget reference (``docs/reference/``).
"""

import pandas as pd

from ..evaluation.comparison import verdict_word
from ..evaluation.reference import load_reference

SETTINGS = ("window", "features", "size", "epochs", "seeds", "loss", "correction", "benchmark")
RESULTS = ("QLIKE_lc", "DM", "p", "in_MCS")


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
    table["verdict"] = [verdict_word(d, p, alpha) for d, p in zip(table["DM"], table["p"], strict=True)]
    return table


def flips(table: pd.DataFrame) -> str:
    """One sentence per family whose verdict differs between its rows, naming the settings that differ;
    one sentence for the families whose verdict holds everywhere."""
    lines, steady = [], []
    for family, t in table.groupby(level="family", sort=False):
        verdicts = t["verdict"][t["verdict"] != "benchmark"]
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


def chapter_rows(
    chapter: str, families: dict[str, str], table: str | None = None, horizon: int | None = None
) -> list[dict]:
    """Rows of :func:`reconciliation` from a chapter's committed full-budget reference: ``families`` maps
    a family name to the chapter's row name; ``table`` picks one of the reference's tables (default:
    its first), ``horizon`` one horizon of a multi-horizon table."""
    ref = load_reference(chapter)
    name = table or next(iter(ref["tables"]))
    block, settings = ref["tables"][name], ref["settings"]
    frame = block["rows"]  # index model, or (horizon, model)
    if frame.index.nlevels > 1:
        frame = frame.xs(
            horizon if horizon is not None else frame.index.get_level_values(0)[0], level="horizon"
        )
    missing = [m for m in families.values() if m not in frame.index]
    if missing:
        raise KeyError(f"chapter {chapter} ({name}) has no rows {missing}; it has {sorted(frame.index)}")
    where = f"chapter {chapter}, full budget" + (f" ({name})" if len(ref["tables"]) > 1 else "")
    out = []
    for family, model in families.items():
        r = frame.loc[model]
        out.append(
            dict(family=family, where=where, window=settings["window"], features=len(settings["features"]),
                 size="chapter's", epochs=f"<= {settings['max_epochs']}, early stopping",
                 seeds=len(settings["seeds"]), loss=settings.get("loss", "mse"),
                 correction=settings.get("correction", "causal"), benchmark=block["benchmark"],
                 QLIKE_lc=float(r["QLIKE_lc"]), DM=float(r["ens DM_QLIKE"]), p=float(r["ens p_QLIKE"]),
                 in_MCS=bool(r["in_MCS"]))
        )  # fmt: skip
    return out
