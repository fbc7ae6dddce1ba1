"""Missing cells in a table (the data layer): which cells are holes, what becomes of them
(NaN in ``x``), and the checks that still refuse a table with holes.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from sirenvae.data import MISSING_TOKENS, DataError, read_frame, read_table
from sirenvae.graph import BayesianNetwork, LatentSplit

#: z is latent; a, b, c and d are observed.
G = BayesianNetwork({"z": [], "a": ["z"], "b": ["z"], "c": ["z"], "d": ["z"]})
SPLIT = LatentSplit(G, ["z"])
COLUMNS = ("a", "b", "c", "d")


def values(rows=40, seed=0):
    """Continuous values with digits that float32 rounds (so bit-for-bit equality means something)."""
    return np.random.default_rng(seed).normal(size=(rows, len(COLUMNS))) * [1, 10, 0.01, 1e4]


def write(path, cells):
    """A CSV of the string cells ``cells`` (rows of strings) under the header a,b,c,d."""
    path.write_text(",".join(COLUMNS) + "\n" + "".join(",".join(r) + "\n" for r in cells))
    return path


def holey(tmp_path, tokens, seed=0, rows=40, share=0.2):
    """A CSV with holes written as ``tokens`` at random cells (no row or column left empty); returns
    the path, the numbers and the mask of the holes.
    """
    rng = np.random.default_rng(seed)
    v = values(rows, seed)
    mask = rng.random(v.shape) < share
    mask[mask.all(1), 0] = False
    cells = [[repr(float(x)) for x in r] for r in v]
    for i, j in zip(*np.nonzero(mask), strict=True):
        cells[i][j] = tokens[rng.integers(len(tokens))]
    return write(tmp_path / "holes.csv", cells), v, mask


DEFAULT_SPELLINGS = ["", "  ", "NA", "na", " N/A", "n/a", "NaN", "nan", "NAN ", "Na"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tokens_become_nan_exactly_where_they_were(tmp_path, dtype):
    path, v, mask = holey(tmp_path, DEFAULT_SPELLINGS + ["?", "-999"], seed=1)
    table = read_table(path, SPLIT, allow_missing=True, missing=["?", "-999"], dtype=dtype)
    assert table.x.dtype == dtype and table.x.shape == v.shape
    np.testing.assert_array_equal(torch.isnan(table.x).numpy(), mask)
    # present cells are the very numbers of the complete table, bit for bit
    complete = read_table(
        write(tmp_path / "full.csv", [[repr(float(x)) for x in r] for r in v]), SPLIT, dtype=dtype
    )
    assert complete.missing == {} and not any("missing" in n for n in complete.notices)
    present = ~torch.from_numpy(mask)
    assert torch.equal(table.x[present], complete.x[present])
    assert torch.equal(complete.x, torch.from_numpy(v).to(dtype))
    # a complete table reads the same with and without allow_missing
    again = read_table(tmp_path / "full.csv", SPLIT, allow_missing=True, dtype=dtype)
    assert torch.equal(again.x, complete.x) and again.notices == complete.notices


def test_the_default_tokens_are_documented_and_case_blind():
    assert {t.casefold() for t in MISSING_TOKENS} == {"", "na", "n/a", "nan"}
    frame = pd.DataFrame(
        {"a": ["1", "NA", "3"], "b": ["n/A", "2", "3"], "c": ["1", "2", " nAn "], "d": list("123")}
    )
    x = read_frame(frame, SPLIT, allow_missing=True).x
    assert torch.isnan(x).nonzero().tolist() == [[0, 1], [1, 0], [2, 2]]


def test_the_default_still_refuses_a_hole(tmp_path):
    path = write(tmp_path / "d.csv", [["1", "2", "3", "4"], ["5", "", "7", "8"], ["9", "10", "11", "12"]])
    with pytest.raises(DataError) as e:
        read_table(path, SPLIT)
    message = str(e.value)
    assert message.startswith(f"{path}: row 2 (line 3), column 'b': missing cell (empty)")
    assert "this command needs every cell" in message
    assert "\n" not in message
    path = write(tmp_path / "d.csv", [["1", "2", "3", "4"], ["5", "6", "NA", "8"], ["9", "10", "N/A", "12"]])
    two = r"row 2 \(line 3\), column 'c': missing cell 'NA' \(2 missing cells in this"
    with pytest.raises(DataError, match=two + r" column\); this command needs every cell"):
        read_table(path, SPLIT)
    # a user's token is a hole too, and refused as one
    path = write(tmp_path / "d.csv", [["1", "2", "3", "4"], ["5", "6", "7", "?"], ["9", "10", "11", "12"]])
    with pytest.raises(DataError, match=r"non-numeric value '\?'$"):
        read_table(path, SPLIT)
    with pytest.raises(DataError, match=r"missing cell '\?'; this command needs"):
        read_table(path, SPLIT, missing="?")
    # a DataFrame's NaN, with the Python API's wording
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": [1.0, 2], "c": [1.0, 2], "d": [1.0, 2]})
    with pytest.raises(
        DataError, match=r"row 1 \(position 1\), column 'a': missing \(NaN\) value; this function"
    ):
        read_frame(frame, SPLIT, hints="python")


def test_user_tokens(tmp_path):
    rows = [
        ["1", "2", "3", "4"],
        ["?", "6", "7", "-999"],
        ["9", " ? ", "11", "-999.0"],
        ["13", "14", "x", "16"],
    ]
    path = write(tmp_path / "d.csv", rows)
    # '?' and -999 are no default tokens
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'a': non-numeric value '\?'"):
        read_table(path, SPLIT, allow_missing=True)
    # without allow_missing a number named as a token is refused as a hole
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'd': missing cell '-999' \(2 missing"):
        read_table(path, G, missing="-999", ignore_columns=["a", "b", "c"])
    frame = pd.DataFrame({"a": [1.0, 2], "b": [1.0, 2], "c": [1.0, 2], "d": [1.0, -999]})
    with pytest.raises(DataError, match=r"row 1 \(position 1\), column 'd': missing cell -999.0; "):
        read_frame(frame, SPLIT, missing=[-999])
    assert read_frame(frame, SPLIT, missing=[-999], allow_missing=True).missing == {"d": 0.5}
    hint = r"; if it marks a missing cell, pass --missing 'x'$"
    with pytest.raises(DataError, match=r"row 4 \(line 5\), column 'c': non-numeric value 'x'" + hint):
        read_table(path, SPLIT, allow_missing=True, missing=["?", "-999"])
    rows[3][2] = "15"
    path = write(tmp_path / "d.csv", rows)
    for missing in (["?", "-999"], "?,-999", ("?", " -999 ")):
        x = read_table(path, SPLIT, allow_missing=True, missing=missing).x
        # a numeric token marks the cells equal to it, however written
        assert torch.isnan(x).nonzero().tolist() == [[1, 0], [1, 3], [2, 1], [2, 3]]
        assert x[3].tolist() == [13, 14, 15, 16]
    # -999 is an ordinary number unless named
    x = read_table(path, SPLIT, allow_missing=True, missing="?").x
    assert x[1, 3] == -999 and x[2, 3] == -999


def test_infinite_and_other_text_stay_errors(tmp_path):
    path = write(tmp_path / "d.csv", [["1", "", "3", "4"], ["5", "6", "-inf", "8"], ["9", "10", "11", "12"]])
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'c': non-finite value '-inf'$"):
        read_table(path, SPLIT, allow_missing=True)
    path = write(tmp_path / "d.csv", [["1", "", "3", "4"], ["5", "6", "NULL", "8"], ["9", "10", "11", "12"]])
    hint = r"; if it marks a missing cell, pass --missing 'NULL'$"
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'c': non-numeric value 'NULL'" + hint):
        read_table(path, SPLIT, allow_missing=True)
    path = write(tmp_path / "d.csv", [["1", "", "3", "4"], ["5", "6", "1e39", "8"], ["9", "10", "11", "12"]])
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'c': 1e\+39 overflows float32 "):
        read_table(path, SPLIT, allow_missing=True)
    frame = pd.DataFrame({"a": [1.0, np.nan, 3], "b": [1.0, 2, np.inf], "c": [1.0, 2, 3], "d": [1.0, 2, 3]})
    with pytest.raises(DataError, match=r"row 2 \(position 2\), column 'b': non-finite value inf$"):
        read_frame(frame, SPLIT, allow_missing=True)


def test_dataframe_holes():
    frame = pd.DataFrame(
        {
            "a": [1.5, np.nan, 3.25, 4.0],
            "b": pd.array([1.0, 2.0, pd.NA, 4.0], dtype="Float64"),
            "c": ["1", None, " n/a ", "4.5"],
            "d": pd.array(["1", "2", "3", pd.NA], dtype="string"),
        },
        index=[10, 11, 12, 13],
    )
    table = read_frame(frame, SPLIT, allow_missing=True)
    expected = np.array(
        [[1.5, 1, 1, 1], [np.nan, 2, np.nan, 2], [3.25, np.nan, np.nan, 3], [4, 4, 4.5, np.nan]]
    )
    np.testing.assert_array_equal(table.x.numpy(), expected.astype(np.float32))
    assert table.missing == {"a": 0.25, "b": 0.25, "c": 0.5, "d": 0.25}


def test_a_column_or_row_with_every_cell_missing_is_an_error(tmp_path):
    """In training data a column with every cell missing is refused (declare the node latent);
    new rows for a fitted model may lack one (it is a hole in every row). A row is refused either way."""
    path = write(tmp_path / "d.csv", [["1", "", "3", "4"], ["5", "NA", "7", "8"], ["9", "nan", "11", "12"]])
    assert read_table(path, SPLIT, allow_missing=True).x[:, 1].isnan().all()  # new rows for a fitted model
    with pytest.raises(DataError) as e:
        read_table(path, SPLIT, allow_missing=True, training=True)
    assert str(e.value) == (
        f"{path}: column 'b' has every cell missing: declare its node latent (--latent) or drop the column"
    )
    path = write(tmp_path / "d.csv", [["1", "", "3", ""], ["5", "NA", "7", "na"], ["9", "nan", "11", "?"]])
    with pytest.raises(
        DataError, match=r"columns 'b', 'd' have every cell missing: declare their nodes latent"
    ):
        read_table(path, SPLIT, allow_missing=True, missing="?", training=True)
    frame = pd.DataFrame({"a": [1.0, 2], "b": [np.nan, np.nan], "c": [1.0, 2], "d": [1.0, 2]})
    with pytest.raises(
        DataError, match=r"^column 'b' has every cell missing: declare its node latent \(latent=\[\.\.\.\]\)"
    ):
        read_frame(frame, SPLIT, allow_missing=True, hints="python", training=True)
    # a row: counted from 1, with its file line (a blank line before it counts)
    path = tmp_path / "r.csv"
    path.write_text("a,b,c,d\n1,2,3,4\n\n,NA, ,nan\n5,6,7,8\nNA,,,\n")
    with pytest.raises(DataError) as e:
        read_table(path, SPLIT, allow_missing=True)
    assert str(e.value) == (
        f"{path}: row 2 (line 4) has every observed cell missing (and 1 more such rows): it holds no data; "
        "drop the row"
    )
    # latent columns and ignored columns do not count as present cells
    path.write_text("id,a,b,c,d\nr1,1,2,3,4\nr2,,,,\nr3,5,6,7,8\n")
    with pytest.raises(
        DataError, match=r"row 2 \(line 3\) has every observed cell missing: it holds no data"
    ):
        read_table(path, SPLIT, allow_missing=True, id_column="id")


def test_the_fraction_missing_is_reported(tmp_path):
    path, _, mask = holey(tmp_path, DEFAULT_SPELLINGS, seed=2, rows=80, share=0.1)
    table = read_table(path, SPLIT, allow_missing=True)
    counts = mask.sum(0)
    assert table.missing == {c: counts[j] / 80 for j, c in enumerate(COLUMNS) if counts[j]}
    listed = ", ".join(f"{c} {100 * counts[j] / 80:.1f}%" for j, c in enumerate(COLUMNS) if counts[j])
    assert table.notices == (
        f"missing cells: {listed} (of 80 rows); they are treated as missing at random (ignorable)",
    )
    # exact numbers, a column without holes left out, a small fraction still visible
    rows = [[repr(float(i + j)) for j in range(4)] for i in range(2000)]
    rows[3][0] = rows[7][0] = ""
    rows[9][3] = "NA"
    table = read_table(write(tmp_path / "d.csv", rows), SPLIT, allow_missing=True)
    assert table.missing == {"a": 0.001, "d": 0.0005}
    assert table.notices == (
        "missing cells: a 0.1%, d 0.05% (of 2000 rows); they are treated as missing at random (ignorable)",
    )


def test_training_checks_use_the_present_cells(tmp_path):
    v = values(30, seed=3)
    v[:, 3] = np.arange(30) * 0.37  # a column with 30 distinct values, and no integers
    cells = [[repr(float(x)) for x in r] for r in v]
    # holes in a fine column: it passes, and only the notice of holes is added
    for i in (0, 5, 6, 29):
        cells[i][1] = ""
    table = read_table(write(tmp_path / "d.csv", cells), SPLIT, allow_missing=True, training=True)
    assert table.notices == (
        "missing cells: b 13.3% (of 30 rows); they are treated as missing at random (ignorable)",
    )
    # constant on its present cells: refused, with the sd and mean of those cells
    constant = [r[:] for r in cells]
    for i, r in enumerate(constant):
        r[2] = "4.25" if i % 3 else "NA"
    with pytest.raises(DataError, match=r"constant or near-constant column\(s\) 'c' \(sd 0 around 4.25\)"):
        read_table(write(tmp_path / "c.csv", constant), SPLIT, allow_missing=True, training=True)
    # two values on its present cells: binary, its holes still holes
    binary = [r[:] for r in cells]
    for i, r in enumerate(binary):
        r[2] = str(i % 2) if i % 3 else ""
    table = read_table(write(tmp_path / "b.csv", binary), SPLIT, allow_missing=True, training=True)
    assert table.variables["c"].kind == "binary" and int(table.x[:, 2].isnan().sum()) == len(binary[::3])
    # integers with holes: the notice counts the present distinct values
    integers = [r[:] for r in cells]
    for i, r in enumerate(integers):
        r[0] = str(i % 5) if i % 4 else "nan"
    table = read_table(write(tmp_path / "i.csv", integers), SPLIT, allow_missing=True, training=True)
    assert any(
        n.startswith("column 'a' has 5 distinct integers: modelled as continuous") for n in table.notices
    )
    # fewer than 2 present cells
    scarce = [r[:] for r in cells]
    for i, r in enumerate(scarce):
        if i:
            r[3] = ""
    with pytest.raises(DataError) as e:
        read_table(write(tmp_path / "s.csv", scarce), SPLIT, allow_missing=True, training=True)
    assert str(e.value).endswith(
        "column(s) 'd' (1 present of 30) have fewer than 2 present cells: too few to learn from; "
        "declare the node(s) latent (--latent) or drop the column(s)"
    )
    # evaluation data need no 2 present cells
    assert read_table(tmp_path / "s.csv", SPLIT, allow_missing=True).missing == {"b": 4 / 30, "d": 29 / 30}
