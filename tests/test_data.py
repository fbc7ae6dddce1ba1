import numpy as np
import pandas as pd
import pytest
import torch

from sirenvae.data import DataError, latent_split, read_csv, read_frame, read_table, sample_splits, write_csv
from sirenvae.graph import BayesianNetwork, GraphError, LatentSplit
from sirenvae.graph_io import read_graph
from sirenvae.networks import load_network

G = BayesianNetwork({"a": [], "b": ["a"], "c": ["b"], "d": ["b"]})


def test_latent_rules_of_the_spec():
    ecoli = load_network("ecoli70").graph
    lat = latent_split(ecoli, "leaves-observed").latent
    assert len(lat) == 22 and all(ecoli.children(v) for v in lat)
    niab = load_network("magic-niab").graph
    lat = latent_split(niab, "roots-and-leaves-observed").latent
    assert len(lat) == 15 and all(niab.children(v) and niab.parents(v) for v in lat)
    assert latent_split(G, "b,a") == LatentSplit(G, ("a", "b"))
    with pytest.raises(GraphError, match="unknown node 'q'"):
        latent_split(G, ["q"])


def test_splits_are_seeded_and_test_sets_are_fresh():
    net = load_network("ecoli70")
    lat = latent_split(net.graph, "leaves-observed")
    a = sample_splits(net, lat, train_size=50, test_size=30, seed=3)
    b = sample_splits(net, lat, train_size=80, test_size=30, seed=3)
    c = sample_splits(net, lat, train_size=50, test_size=30, seed=4)
    assert torch.equal(a.test, b.test)  # the test set depends on the seed only
    assert not torch.equal(a.train, c.train)
    assert a.train.shape == (50, 24) and a.train_latent.shape == (50, 22)
    # no test row is a training row
    assert torch.cdist(a.train, a.test).min() > 0


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_csv_orders_columns_and_infers_latents(tmp_path):
    path = write(tmp_path, "d,c\n1,2\n3,4\n")
    x, split = read_csv(path, G)
    observed = split.observed
    assert observed == ("c", "d") and split.latent == ("a", "b")
    assert x.tolist() == [[2, 1], [4, 3]]
    out = tmp_path / "o.csv"
    write_csv(out, observed, x)
    assert read_csv(out, G)[0].tolist() == x.tolist()


@pytest.mark.parametrize(
    "text, latent, match",
    [
        ("c,d,zz\n1,2,3\n", None, "column 'zz' matches no node"),
        ("c,c\n1,2\n", None, "column 'c' appears twice"),
        ("c\n1\n", ["a", "b"], r"observed node\(s\) without a column: d"),
        ("b,c,d\n1,2,3\n", ["a", "b"], r"column\(s\) b are latent"),
        ("c,d\n1,2\n3,x\n", None, r"row 2 \(line 3\), column 'd': non-numeric value 'x'"),
        ("c,d\n1,2\nnan,1\n", None, r"row 2 \(line 3\), column 'c': missing cell 'nan'"),
        ("c,d\n1,inf\n", None, r"row 1 \(line 2\), column 'd': non-finite value 'inf'"),
        ("c,d\n1,\n", None, r"column 'd': missing cell \(empty\)"),
        ("c,d\n1,2\n3,-1e300\n", None, r"row 2 \(line 3\), column 'd': -1e\+300 overflows float32"),
        ("c,d\n1,4e38\n", None, r"row 1 \(line 2\), column 'd': 4e\+38 overflows float32"),
        ("c,d\n", None, r"0 data row\(s\), at least 1 needed"),
        ("", None, "empty"),
        ("a,b,c,d\n1,2,3,4\n", None, "none is latent"),
        (
            "a,b,c,d\n,NaN,3,4\n ,,5,6\n",
            None,
            r"none is latent.*column\(s\) a, b have no value at all.*--latent a,b",
        ),
    ],
)
def test_read_csv_errors_name_row_and_column(tmp_path, text, latent, match):
    with pytest.raises(DataError, match=match):
        read_csv(write(tmp_path, text), G if latent is None else LatentSplit(G, latent))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_csv(tmp_path / "nope.csv", G)


def test_read_csv_overflow_depends_on_the_dtype(tmp_path):
    path = write(tmp_path, "c,d\n1,2\n3,1e300\n4,1e300\n")
    with pytest.raises(DataError, match=r"1e\+300 overflows float32 .*\(2 such cells\).*rescale"):
        read_csv(path, G)
    x, _ = read_csv(path, G, dtype=torch.float64)
    assert x[1, 1] == 1e300
    # values whose square overflows are finite data: the model standardises them
    assert read_csv(write(tmp_path, "c,d\n1,2\n3,1e30\n"), G)[0][1, 1] == torch.tensor(1e30)


@pytest.mark.parametrize(
    "header, match",
    [
        ("C,d", "is column 'C' node 'c'"),  # case
        ("c,d,zz", r"column 'zz' matches no node of the graph; nodes are a, b, c, d; .*--ignore-columns zz"),
    ],
)
def test_near_misses_of_nodes_without_a_column(tmp_path, header, match):
    values = ",".join("1" * len(header.split(",")))
    with pytest.raises(DataError, match=match):
        read_csv(write(tmp_path, f"{header}\n{values}\n"), G)


def test_near_misses_by_edit_distance(tmp_path):
    g = BayesianNetwork({"smoking": [], "smokng": [], "cancer": ["smoking", "smokng"]})
    path = write(tmp_path, "smoknig,cancer\n1,2\n")
    with pytest.raises(DataError, match="is column 'smoknig' node 'smoking'"):
        read_csv(path, LatentSplit(g, ["smokng"]))
    with pytest.raises(
        DataError, match="is column 'smoknig' node 'smoking'.*; and column 'smoknig' node 'smokng'"
    ):
        read_csv(path, g)
    # whitespace differences
    g = BayesianNetwork({"z": [], "blood pressure": ["z"], "heart rate": ["z"]})
    with pytest.raises(DataError, match="is column 'bloodpressure' node 'blood pressure'"):
        read_csv(write(tmp_path, "heart rate,bloodpressure\n1,2\n"), LatentSplit(g, ["z"]))
    # separators: a short name one underscore away is still a near miss
    g = BayesianNetwork({"z": [], "y_1": ["z"], "y2": ["z"]})
    with pytest.raises(DataError, match="is column 'y1' node 'y_1'"):
        read_csv(write(tmp_path, "y1,y2\n1,2\n"), LatentSplit(g, ["z"]))
    # names too short for a typo are not guessed at
    with pytest.raises(DataError) as e:
        read_csv(write(tmp_path, "c,d,aa\n1,2,3\n"), G)
    assert "did you mean" not in str(e.value) and "column 'aa' matches no node" in str(e.value)


def test_a_file_separated_by_semicolons_is_named_as_such(tmp_path):
    with pytest.raises(DataError, match="seems to separate values with ';'; sirenvae reads comma-separated"):
        read_csv(write(tmp_path, "c;d\n1;2\n3;4\n"), G)


def test_ignored_and_latent_columns(tmp_path, caplog):
    path = write(tmp_path, "id,c,b,d\nr1,1,2,3\nr2,4,5,6\n")
    x, split = read_csv(path, G, ignore_columns=["id"])
    assert split.latent == ("a",) and x.tolist() == [[2, 1, 3], [5, 4, 6]]
    x, split = read_csv(path, G, ignore_columns=["id", "b"])
    assert split.latent == ("a", "b") and x.tolist() == [[1, 3], [4, 6]]
    with pytest.raises(DataError, match="no column 'ID' to ignore; the columns are id, c, b, d"):
        read_csv(path, G, ignore_columns=["ID"])
    ab = LatentSplit(G, ["a", "b"])
    with pytest.raises(DataError, match=r"column\(s\) b are latent nodes.*--ignore-columns b"):
        read_csv(path, ab, ignore_columns=["id"])
    table = read_table(path, ab, ignore_columns=["id"], drop_latent_columns=True)
    assert table.x.tolist() == [[1, 3], [4, 6]]
    assert table.notices == ("ignoring column(s) b of d.csv: they are latent nodes",)
    with caplog.at_level("WARNING"):
        read_csv(path, ab, ignore_columns=["id"], drop_latent_columns=True)
    assert "ignoring column(s) b" in caplog.text


def test_training_data_must_vary_and_be_continuous(tmp_path):
    rows = "\n".join(f"{i % 2},{i},{1 + 1e-12 * i},{i * 0.37}" for i in range(12))
    path = write(tmp_path, "a,b,c,d\n" + rows + "\n")
    split = LatentSplit(BayesianNetwork({"z": [], "a": ["z"], "b": ["z"], "c": ["z"], "d": ["z"]}), ["z"])
    assert read_table(path, split).notices == ()  # evaluation data may be anything finite
    with pytest.raises(
        DataError, match=r"constant or near-constant column\(s\) 'c' \(sd 3.61e-12 around 1\)"
    ):
        read_table(path, split, training=True)
    rows = "\n".join(f"{i % 2},{i % 7},{i},{i * 0.37}" for i in range(12))
    path = write(tmp_path, "a,b,c,d\n" + rows + "\n")
    table = read_table(path, split, training=True)  # 2 values: binary; few integers: a hint
    assert table.variables["a"].kind == "binary" and table.variables["b"].kind == "continuous"
    assert table.notices == (
        "column 'a' has 2 distinct values: modelled as binary, 1 = '1' (pass --types a=normal to fit it "
        "as continuous)",
        "column 'b' has 7 distinct integers: modelled as continuous; pass --types b=count or "
        "--types b=categorical if it is one",
        "column 'c' holds only whole numbers >= 0 (12 distinct): modelled as continuous; pass "
        "--types c=count if it counts something",
    )
    path = write(tmp_path, "a,b,c,d\n1,2,3,4\n1,3,4,5\n")
    with pytest.raises(DataError, match=r"'a' \(sd 0 around 1\)"):
        read_table(path, split, training=True)


def test_byte_order_mark_and_id_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfid,c,d\r\nr1,1,2\r\nr2,3,4\r\n")
    table = read_table(path, G, id_column="id")
    assert table.ids == ("r1", "r2") and table.id_column == "id" and table.notices == ()
    assert table.x.tolist() == [[1, 2], [3, 4]] and table.split.latent == ("a", "b")
    assert read_csv(path, G, ignore_columns=["id"])[0].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(DataError, match="no ID column 'ID'; the columns are id, c, d"):
        read_table(path, G, id_column="ID")
    path = write(tmp_path, "c,d,id\n1,2,x\n3,4,x\n")
    assert read_table(path, G, id_column="id").notices == (
        "the ID column 'id' repeats 'x': IDs do not tell its rows apart",
    )


def test_an_unnamed_first_column_is_read_as_row_ids(tmp_path):
    """pandas' ``to_csv`` writes the index first with an empty name; it becomes row IDs, with a notice."""
    frame = pd.DataFrame({"c": [1.0, 3.0], "d": [2.0, 4.0]}, index=[7, 8])
    frame.to_csv(tmp_path / "indexed.csv")
    table = read_table(tmp_path / "indexed.csv", G)
    assert table.ids == ("7", "8") and table.x.tolist() == [[1, 2], [3, 4]]
    assert table.notices == (
        "the first column '' has no name (a row index, as pandas' to_csv writes it): read as row IDs",
    )
    frame = pd.read_csv(tmp_path / "indexed.csv", dtype={"c": float})  # pandas names it 'Unnamed: 0'
    assert read_frame(frame, G).ids == ("7", "8")
    with pytest.raises(DataError, match="column '' matches no node"):  # only the first column
        read_table(write(tmp_path, "c,,d\n1,0,2\n"), G)


def test_file_lines_count_blank_lines_and_quoted_line_breaks(tmp_path):
    path = write(tmp_path, 'id,c,d\nr1,1,2\n\n"two\nlines",3,4\n   \nr3,5,x\n')
    with pytest.raises(DataError, match=r"row 3 \(line 7\), column 'd': non-numeric value 'x'"):
        read_csv(path, G, id_column="id")
    path = write(tmp_path, "c,d\n1,2\n\n3,1e39\n")
    with pytest.raises(DataError, match=r"row 2 \(line 4\), column 'd': 1e\+39 overflows float32"):
        read_csv(path, G)


def test_latent_nodes_named_like_a_column_get_a_notice(tmp_path):
    g = BayesianNetwork(
        {"smoking": [], "smokng": [], "cancer": ["smoking", "smokng"], "x1": [], "x2": ["x1"]}
    )
    table = read_table(write(tmp_path, "smoking,cancer,x1\n1,2,3\n"), g)
    assert table.split.latent == ("smokng", "x2")
    assert table.notices == (
        "latent node 'smokng' is named like column 'smoking': is 'smokng' a typo in the graph?",
    )


def test_short_names_one_edit_apart_are_not_typos(tmp_path):
    g = BayesianNetwork({"h10": [], "x10": ["h10"], "X5": [], "x5": ["X5"], "y": ["x10", "x5"]})
    table = read_table(write(tmp_path, "x10,x5,y\n1,2,3\n"), g)
    assert table.split.latent == ("h10", "X5")
    assert table.notices == ("latent node 'X5' is named like column 'x5': is 'X5' a typo in the graph?",)


def test_numbered_families_are_not_typos_and_notices_are_capped(tmp_path):
    # n10 vs n101 differ by a digit only: a numbered family, as in a large graph with every 5th
    # node hidden (1,023 notices before this rule); real typos are still named, at most 5 of them
    nodes = [f"n{i}" for i in range(200)]
    typos = ["smokng", "cancr", "blod", "hert", "livr", "kidny", "lung"]
    columns = [v for i, v in enumerate(nodes) if i % 5] + [
        "smoking",
        "cancer",
        "blood",
        "heart",
        "liver",
        "kidney",
    ]
    g = BayesianNetwork({v: [] for v in nodes + typos + columns[-6:]})
    header = ",".join(columns)
    table = read_table(write(tmp_path, f"{header}\n{','.join('1' * len(columns))}\n"), g)
    assert len(table.split.latent) == 40 + len(typos)
    assert len(table.notices) == 6
    assert (
        table.notices[0]
        == "latent node 'smokng' is named like column 'smoking': is 'smokng' a typo in the graph?"
    )
    assert table.notices[-1] == "1 more latent node(s) are named like a column"  # lung is none
    assert not any("'n" in note for note in table.notices)


def test_unknown_columns_of_a_numbered_graph_get_no_false_suggestions(tmp_path):
    # an edge list leaves out nodes without edges; their columns (g15, g28) are unknown, and nodes
    # without a column (g1, g2) differ from them in numbers only: no "did you mean" for those
    g = BayesianNetwork({"g1": [], "g2": ["g1"], "g3": ["g2"], "smoking": [], "cancer": ["smoking", "g3"]})
    table = "g15,g28,g3,smokng,cancer\n1,2,3,4,5\n"
    with pytest.raises(DataError) as e:
        read_csv(write(tmp_path, table), LatentSplit(g, ["g1", "g2"]))
    message = str(e.value)
    assert "is column 'smokng' node 'smoking'?" in message and "'g15' node" not in message
    with pytest.raises(DataError) as e:
        read_csv(write(tmp_path, "g15,g28,g3,smoking,cancer\n1,2,3,4,5\n"), LatentSplit(g, ["g1", "g2"]))
    assert "column 'g15' matches no node" in str(e.value) and "row of its own" not in str(e.value)
    edges = tmp_path / "edges.csv"  # a graph read from an edge list: the message says how to add g15
    edges.write_text("parent,child\ng1,g2\ng2,g3\nsmoking,cancer\ng3,cancer\n")
    with pytest.raises(DataError) as e:
        read_csv(
            write(tmp_path, "g15,g28,g3,smoking,cancer\n1,2,3,4,5\n"),
            LatentSplit(read_graph(edges), ["g1", "g2"]),
        )
    assert "a row of its own: ,g15" in str(e.value)
    # many near misses: five named, the rest counted
    words = ["pressure", "glucose", "insulin", "cortisol", "ferritin", "albumin", "calcium", "sodium"]
    typos = ["presure", "glucse", "insuln", "cortsol", "ferrtin", "albumn", "calcum", "sodim"]
    with pytest.raises(DataError, match=r"column 'ferrtin' node 'ferritin'\? \(3 more alike\)"):
        read_csv(
            write(tmp_path, f"{','.join(typos)}\n{','.join('1' * 8)}\n"),
            BayesianNetwork({w: [] for w in words}),
        )


def test_latent_nodes_that_nothing_observed_depends_on_get_a_notice():
    graph = BayesianNetwork({"a": [], "z": ["a"], "b": ["z"], "h": ["b"], "h2": ["h"]})
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20)})
    notices = read_frame(df, graph, training=True).notices
    said = [n for n in notices if "no observed descendant" in n]
    assert len(said) == 1 and said[0].startswith("latent node(s) h, h2 have no observed descendant")
    assert "z" not in said[0].split(":")[0]  # z has an observed child
    # with a column for h, h2 is still unseen, h no more
    df["h"] = rng.normal(size=20)
    (only,) = [n for n in read_frame(df, graph, training=True).notices if "no observed descendant" in n]
    assert only.startswith("latent node(s) h2 have")
    df["h2"] = rng.normal(size=20)
    assert not any("no observed descendant" in n for n in read_frame(df, graph, training=True).notices)


def test_very_few_training_rows_get_a_notice_that_names_the_search_minimum():
    from sirenvae.data import FEW_TRAINING_ROWS
    from sirenvae.selection import default_folds, min_rows

    assert FEW_TRAINING_ROWS == min_rows(default_folds(FEW_TRAINING_ROWS - 1))  # what auto refuses below
    graph = BayesianNetwork({"a": [], "z": ["a"], "b": ["z"]})
    rng = np.random.default_rng(0)
    for n, said in ((3, True), (FEW_TRAINING_ROWS - 1, True), (FEW_TRAINING_ROWS, False)):
        df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
        notices = [x for x in read_frame(df, graph, training=True).notices if "training rows" in x]
        assert bool(notices) == said and (not said or notices[0].startswith(f"only {n} training rows")), n
        assert not [x for x in read_frame(df, graph).notices if "training rows" in x]  # new rows: no notice


def test_many_binary_columns_get_one_notice_grouped_by_the_level_read_as_1():
    import pandas as pd

    from sirenvae.graph import BayesianNetwork

    cols = {f"s{i}": ["yes", "no"] * 10 for i in range(5)} | {"t0": [0, 1] * 10}
    bn = BayesianNetwork({"h": []} | {c: ["h"] for c in cols})
    table = read_frame(pd.DataFrame(cols), bn, training=True)
    said = [n for n in table.notices if "binary" in n]
    assert said == [
        "6 columns have 2 distinct values: modelled as binary (1 = 'yes' in s0, s1, s2, s3, s4; "
        "1 = '1' in t0); pass --types NAME=normal to fit one as continuous"
    ]
    assert all(table.variables[c].kind == "binary" for c in cols)


def test_a_continuous_column_with_a_spike_gets_a_notice_not_the_log_normal_hint():
    """97% of a measurement at one value: a density is rewarded for a spike there without bound."""
    import numpy as np
    import pandas as pd

    from sirenvae.graph import BayesianNetwork

    r = np.random.default_rng(0)
    n = 200
    temp = np.where(np.arange(n) % 33 == 0, 37.0 + r.exponential(1.0, n), 37.0)  # right-skewed too
    smooth = r.normal(size=n)
    bn = BayesianNetwork({"h": [], "temp": ["h"], "smooth": ["h"]})
    table = read_frame(pd.DataFrame({"temp": temp, "smooth": smooth}), bn, training=True)
    said = [n for n in table.notices if "temp" in n]
    assert said == [
        "column 'temp' holds 37 in 96% of its cells: a density puts a spike there and its likelihood can "
        "dominate the NLL of every model; drop the column (its node becomes latent), or pass "
        "--types temp=categorical if it takes few values"
    ]
    assert not [n for n in table.notices if "smooth" in n]


def test_excel_exports_get_a_way_out(tmp_path):
    """Semicolons with decimal commas, numbers with decimal commas in a comma file, and a
    Windows-1252 file: one line each saying what to do."""
    split = LatentSplit(BayesianNetwork({"z": [], "a": ["z"], "b": ["z"]}), ["z"])
    rows = "\n".join(f"{i},{i % 7};{i * 3},{i % 5}" for i in range(30))
    with pytest.raises(DataError, match=r"sep=';', decimal=','\)\.to_csv"):
        read_table(write(tmp_path, "a;b\n" + rows + "\n"), split, training=True)
    rows = "\n".join(f'"{i},{i % 7}",{i * 0.3}' for i in range(30))
    with pytest.raises(DataError, match=r"column 'a' holds numbers written with a decimal comma \('0,0'\)"):
        read_table(write(tmp_path, "a,b\n" + rows + "\n"), split, training=True)
    path = tmp_path / "latin.csv"
    path.write_bytes(b"a,b\n" + "\n".join(f"{i}.5,{i}°" for i in range(12)).encode("cp1252"))
    with pytest.raises(DataError, match="not UTF-8 text .* save it as 'CSV UTF-8'"):
        read_table(path, split, training=True)


def test_suggested_options_are_quoted_for_the_shell(tmp_path):
    split = LatentSplit(BayesianNetwork({"z": [], "a": ["z"], "b": ["z"]}), ["z"])
    rows = "\n".join(f"{i},{i * 0.5},{i % 3 * 0.7},x{i}" for i in range(12))
    with pytest.raises(DataError, match=r"pass --ignore-columns 'sample id,notes'"):
        read_table(write(tmp_path, "sample id,a,b,notes\n" + rows + "\n"), split)


def test_exact_repeats_of_continuous_rows_are_noticed_in_training_only():
    graph = BayesianNetwork({"z": [], "a": ["z"], "b": ["z"], "c": ["z"]})
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(12, 3)), columns=["a", "b", "c"])
    df.loc[5, "c"] = np.nan
    repeated = pd.concat([df, df.iloc[[2, 5]]], ignore_index=True)  # a copy with a hole repeats too
    (note,) = [
        n for n in read_frame(repeated, graph, training=True, allow_missing=True).notices if "repeat" in n
    ]
    assert note.startswith(
        "2 row(s) repeat an earlier row exactly (row 12 (position 12) = row 2 (position 2))"
    )
    assert not [n for n in read_frame(df, graph, training=True, allow_missing=True).notices if "repeat" in n]
    assert not [n for n in read_frame(repeated, graph, allow_missing=True).notices if "repeat" in n]
    words = pd.DataFrame({v: rng.choice(["no", "yes"], 30) for v in "abc"})  # discrete rows repeat by chance
    assert not [n for n in read_frame(words, graph, training=True).notices if "repeat" in n]
