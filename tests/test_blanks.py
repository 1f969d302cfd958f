"""course_lib.evaluation.blanks: empty cells are blank on the page, each with its reason, and an empty cell
without a reason is an error."""

import numpy as np
import pandas as pd
import pytest

from course_lib.evaluation.blanks import blank_cells


def test_empty_cells_are_blank_and_named_with_their_reason():
    table = pd.DataFrame(
        {
            "MSE": [1.0, 2.0, 3.0],
            "DM": [np.nan, -1.5, 0.5],
            "DM_p": [np.nan, 0.1, 0.6],
            "DA": [np.nan, 0.5, 0.52],
        },
        index=pd.Index(["zero", "mean", "TCN"], name="model"),
    )
    styled, note = blank_cells(table)
    assert note == (
        "Empty cells: DM, DM_p for zero (the benchmark is not tested against itself, nor a forecast "
        "identical to it); DA for zero (a forecast that is always zero has no direction)."
    )
    html = styled.to_html()
    assert "nan" not in html.lower() and "-1.5000" in html, "empty cells blank, numbers kept"
    assert blank_cells(table.dropna())[1] == "The table has no empty cell."


def test_an_empty_cell_without_a_reason_is_an_error():
    table = pd.DataFrame({"MSE": [1.0, np.nan]}, index=["a", ("b", 1)])
    with pytest.raises(ValueError, match=r"\['MSE'\].*reasons="):
        blank_cells(table)
    _, note = blank_cells(table, reasons={"MSE": "not scored"})
    assert note == "Empty cells: MSE for b 1 (not scored)."
    with pytest.raises(TypeError, match="DataFrame"):
        blank_cells(table["MSE"])
