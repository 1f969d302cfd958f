"""A table for the page: the cells that are empty by design shown blank, and a sentence that says why.

The tables of :mod:`.tables` have cells that are empty on purpose: the benchmark is not tested against
itself (nor is a forecast identical to it), a forecast that is always zero has no direction (its DA), a
model without validation forecasts has no level factor learnt on them. A reader must not meet a bare
``NaN``: :func:`blank_cells` returns the table styled with those cells blank and the sentence to print
under it, and raises when a column has empty cells for no reason it knows (a NaN there is a bug to fix,
or a reason to pass). Imported from its own path: ``from course_lib.evaluation.blanks import blank_cells``.
"""

import pandas as pd

_BENCHMARK = "the benchmark is not tested against itself, nor a forecast identical to it"
_NO_VAL = "no validation forecasts to learn the level factor from"

# why a cell of these columns (of results_table, seed_summary, correction_variants) may be empty
REASONS = {
    **dict.fromkeys(
        [
            "DM",
            "DM_p",
            "CW",
            "CW_p",
            "DM_QLIKE",
            "p_QLIKE",
            "ens DM",
            "ens DM_p",
            "ens DM_QLIKE",
            "ens p_QLIKE",
        ],
        _BENCHMARK,
    ),
    "DA": "a forecast that is always zero has no direction",
    "QLIKE_lc": _NO_VAL,
    "factor val": _NO_VAL,
    "QLIKE validation": _NO_VAL,
}


def _label(key) -> str:
    return " ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def blank_cells(table: pd.DataFrame, reasons: dict[str, str] | None = None, precision: int = 4):
    """``(styled, note)``: ``table`` for display with its empty cells blank, and one sentence naming each
    column with empty cells, its rows, and why they are empty.

    ``reasons`` adds or overrides ``{column: why}`` for the columns of a chapter's own tables. The numbers
    are not changed: only how an empty cell is shown (``na_rep=""``); floats show ``precision`` decimals.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, not {type(table).__name__}")
    why = {**REASONS, **(reasons or {})}
    empty = {col: table.index[table[col].isna()] for col in table.columns if table[col].isna().any()}
    unknown = [str(col) for col in empty if col not in why]
    if unknown:
        raise ValueError(
            f"column(s) {unknown} have empty cells and no reason for them: fix the NaN, or pass "
            "reasons={column: 'why the cell is empty'} to blank_cells"
        )
    groups: dict[tuple, list[str]] = {}  # the same rows for the same reason: one clause
    for col, rows in empty.items():
        groups.setdefault((tuple(_label(r) for r in rows), why[col]), []).append(str(col))
    if groups:
        note = "Empty cells: " + "; ".join(
            f"{', '.join(cols)} for {', '.join(rows)} ({reason})" for (rows, reason), cols in groups.items()
        )
    else:
        note = "The table has no empty cell"
    return table.style.format(precision=precision, na_rep=""), note + "."
