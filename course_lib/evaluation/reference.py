"""Full-budget reference results of the research chapters, and the notebook budget beside them.

A chapter's notebook trains its networks for a few epochs and seeds so that it runs in a minute or two
on a CPU; at that budget a verdict ("worse than the benchmark", "outside the model confidence set") may
say more about the budget than about the architecture. ``make reference`` (``scripts/reference_runs.py``)
trains the same models on the same task at a full budget (5 seeds, epochs to early stopping) and commits,
per chapter, ``docs/reference/<chapter>.json`` (settings and one record per model: losses, the test of
the seed ensemble against the benchmark, MCS membership, the verdict word), ``<chapter>.md`` (the tables,
with command, machine and date) and ``<chapter>.npz`` (the seed-ensemble and per-seed test forecasts).

The **verdict** of a row is the Diebold-Mariano test of its seed ensemble against the table's benchmark
on level-corrected QLIKE at 5% (``better``, ``worse`` or ``no significant difference``) together with its
membership of the 90% model confidence set. :func:`budget_comparison` puts a notebook's
:func:`~course_lib.evaluation.tables.seed_summary` beside the committed reference, row by row, and
:func:`budget_verdicts` says in one computed sentence per model whether the verdict changes.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .comparison import verdict_word

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "docs" / "reference"  # the repository's, not the cwd's
CHAPTERS = ("01", "02", "03", "04", "06a", "06c", "06e")
ALPHA = 0.05  # the level of the Diebold-Mariano verdict
RECORD = ["QLIKE", "QLIKE_lc", "MSE", "ens DM_QLIKE", "ens p_QLIKE", "in_MCS"]  # the columns kept per row


def table_records(table: pd.DataFrame) -> list[dict]:
    """The rows of a :func:`~course_lib.evaluation.tables.seed_summary` as JSON-ready records:
    ``horizon`` (None for a one-horizon table), ``model``, the :data:`RECORD` columns and ``verdict``."""
    missing = [c for c in RECORD if c not in table.columns]
    if missing:
        raise KeyError(f"the table lacks the columns {missing}: pass a volatility seed_summary")
    records = []
    for key, row in table[RECORD].iterrows():
        horizon, model = key if isinstance(key, tuple) else (None, key)
        record = {"horizon": None if horizon is None else int(horizon), "model": str(model)}
        for col in RECORD:
            v = row[col]
            record[col] = bool(v) if col == "in_MCS" else (None if pd.isna(v) else float(v))
        record["verdict"] = verdict_word(
            np.nan if record["ens DM_QLIKE"] is None else record["ens DM_QLIKE"],
            np.nan if record["ens p_QLIKE"] is None else record["ens p_QLIKE"],
            ALPHA,
        )
        records.append(record)
    return records


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Records of :func:`table_records` back as a DataFrame indexed like the table they came from."""
    frame = pd.DataFrame(records)
    if frame["horizon"].isna().all():
        return frame.drop(columns="horizon").set_index("model")
    return frame.astype({"horizon": int}).set_index(["horizon", "model"])


def reference_path(chapter: str, directory: str | Path | None = None, suffix: str = ".json") -> Path:
    """``docs/reference/<chapter><suffix>`` of this repository (or of ``directory``)."""
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter must be one of {CHAPTERS}, got {chapter!r}")
    return Path(directory or REFERENCE_DIR) / f"{chapter}{suffix}"


def load_reference(chapter: str, directory: str | Path | None = None) -> dict:
    """The committed full-budget reference of ``chapter``: the JSON written by ``make reference``, with
    each entry of ``"tables"`` turned into ``{"benchmark": name, "rows": DataFrame}`` (index ``model``, or
    ``(horizon, model)``)."""
    path = reference_path(chapter, directory)
    if not path.is_file():
        raise FileNotFoundError(
            f"no reference results for chapter {chapter} at {path}: run `make reference CHAPTER={chapter}`"
        )
    reference = json.loads(path.read_text())
    for key in ("chapter", "settings", "tables"):
        if key not in reference:
            raise KeyError(f"{path} has no {key!r} entry: it was not written by scripts/reference_runs.py")
    reference["tables"] = {
        label: {**t, "rows": records_frame(t["rows"])} for label, t in reference["tables"].items()
    }
    return reference


def provenance(reference: dict) -> str:
    """Where a committed reference comes from, in one line a chapter prints above its comparison: the
    seeds, the epoch cap and patience, the command, the date, the machine and the torch version."""
    settings = reference["settings"]
    return (
        f"full budget: seeds {settings['seeds']}, up to {settings['max_epochs']} epochs with patience "
        f"{settings['patience']}; `{reference['command']}` on {reference['date']} ({reference['machine']}, "
        f"torch {reference['torch']})"
    )


def _describe(budget: dict) -> str:
    seeds = budget.get("seeds")
    n_seeds = len(seeds) if isinstance(seeds, list | tuple) else seeds
    epochs = budget.get("epochs")
    if isinstance(epochs, list | tuple):  # best epoch of every seed
        epochs = (
            f"best epochs {min(epochs)}-{max(epochs)}"
            if min(epochs) != max(epochs)
            else f"{epochs[0]} epochs"
        )
    else:  # the notebook's EPOCHS: a cap (early stopping may end sooner)
        epochs = f"at most {epochs} epochs"
    return f"{epochs}, {n_seeds} seeds"


def budget_comparison(
    notebook_table: pd.DataFrame,
    reference: dict,
    table: str | None = None,
    models: list[str] | None = None,
    notebook_budget: dict | None = None,
) -> pd.DataFrame:
    """The notebook-budget row of each model beside its committed full-budget row.

    ``notebook_table``: the chapter's :func:`~course_lib.evaluation.tables.seed_summary`; ``reference``:
    :func:`load_reference`; ``table``: which of its tables (default: the only one); ``models``: the rows
    to compare (default: the reference's trained models); ``notebook_budget``: ``{"epochs": ...,
    "seeds": ...}`` of the notebook, for the sentences. Returns one row per model (and horizon) and
    budget (``notebook``, ``full``) with the :data:`RECORD` columns and ``verdict``; ``attrs`` carry the
    two benchmarks and budgets that :func:`budget_verdicts` reads.
    """
    tables = reference["tables"]
    if table is None:
        if len(tables) != 1:
            raise ValueError(f"the reference has several tables {list(tables)}: pass table=")
        (table,) = tables
    if table not in tables:
        raise KeyError(f"the reference has no table {table!r}; it has {list(tables)}")
    bench = notebook_table.attrs.get("benchmark")
    if bench is None:
        raise ValueError("budget_comparison needs a table made by seed_summary (it reads table.attrs)")
    full, notebook = tables[table]["rows"], records_frame(table_records(notebook_table))
    if full.index.names != notebook.index.names:
        raise ValueError(
            f"the notebook table is indexed by {notebook.index.names}, the reference by {full.index.names}"
        )
    names = list(models or reference["models"])
    for label, frame in (("the notebook table", notebook), ("the reference", full)):
        unknown = [m for m in names if m not in frame.index.get_level_values("model")]
        if unknown:
            raise KeyError(f"models {unknown} are not rows of {label}")

    def rows(frame):
        return frame[frame.index.get_level_values("model").isin(names)][[*RECORD, "verdict"]]

    both = pd.concat({"notebook": rows(notebook), "full": rows(full)}, names=["budget"])
    both = both.reorder_levels([*full.index.names, "budget"])
    keys = [k if isinstance(k, tuple) else (k,) for k in rows(full).index]
    both = both.loc[[(*k, b) for k in keys for b in ("notebook", "full")]]
    both.attrs.update(
        benchmark={"notebook": bench, "full": tables[table]["benchmark"]},
        budget={"notebook": dict(notebook_budget or {}), "full": reference["settings"]["budget"]},
        table=table,
    )
    return both


def budget_verdicts(comparison: pd.DataFrame) -> str:
    """One sentence per model (and horizon) read off :func:`budget_comparison`: its verdict against the
    benchmark at the notebook budget and at the full budget, and whether the budget changes it."""
    bench, budget = comparison.attrs.get("benchmark"), comparison.attrs.get("budget")
    if bench is None:
        raise ValueError("budget_verdicts needs a table made by budget_comparison (it reads table.attrs)")
    small, full = _describe(budget["notebook"]), _describe(budget["full"])
    lines = []
    if bench["notebook"] != bench["full"]:
        lines.append(
            f"The benchmarks differ ({bench['notebook']} in the notebook, {bench['full']} in the reference): "
            "the two verdicts of a row are tests against different forecasts."
        )

    def said(row) -> str:
        mcs = "inside" if row["in_MCS"] else "outside"
        return f"{row['verdict']} (corrected QLIKE {row['QLIKE_lc']:.4f}, {mcs} the MCS)"

    levels = [n for n in comparison.index.names if n != "budget"]
    groups = comparison.groupby(level=levels if len(levels) > 1 else levels[0], sort=False)
    changed = 0
    for key, rows in groups:
        rows = rows.droplevel(levels)
        nb, fb = rows.loc["notebook"], rows.loc["full"]
        name = f"h = {key[0]}: {key[1]}" if isinstance(key, tuple) else key
        flips = [what for what, col in (("the test", "verdict"), ("the MCS", "in_MCS")) if nb[col] != fb[col]]
        text = (
            f"{name} against {bench['full']}: {said(nb)} at the notebook budget ({small}); {said(fb)} at the "
            f"full budget ({full})"
        )
        if flips:
            changed += 1
            text += (
                f": the verdict CHANGES ({' and '.join(flips)}), so the notebook's verdict is one of its "
                "budget, not of the architecture."
            )
        else:
            text += ": the verdict does not change with the budget."
        lines.append(text)
    lines.append(
        f"{changed} of {len(groups)} verdicts change between the notebook budget and the full budget."
    )
    return "\n".join(lines)
