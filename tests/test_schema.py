import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

from siblings.aggregate import QUERIES, SIMILARITY, query_readings, similarity_table
from siblings.artifacts import read_parquet
from siblings.correlate import CORRELATIONS, correlations
from siblings.results_doc import markdown, tables
from siblings.schema import Column, SchemaError, TableSchema

TABLE = TableSchema("toy", 3, "A table for the tests.", (
    Column("name", pa.string(), "name", "what the row is"),
    Column("rate", pa.float64(), "fraction 0-1", "a share"),
    Column("count", pa.int64(), "images", "a count"),
    Column("ok", pa.bool_(), "true/false", "a flag"),
    Column("per_image", pa.list_(pa.float64()), "queries, per image", "a list"),
))


def frame(**changes) -> pd.DataFrame:
    rows = {"name": ["a", "b"], "rate": [0.5, np.nan], "count": [3, 4], "ok": [True, None],
            "per_image": [[1.0, np.nan], np.array([2.0])]}
    return pd.DataFrame({**rows, **changes})


def test_a_fitting_frame_passes_with_the_types_pandas_produces():
    TABLE.validate(frame())
    TABLE.validate(frame(rate=[1, 2], count=[3.0, np.nan], per_image=[None, []]))  # ints in
    # a float column; a nullable int column as pandas stores it: floats with NaN


@pytest.mark.parametrize("column,values,shown", [
    ("rate", [0.25, "0.5"], "'0.5'"),  # a string in a float column
    ("count", [3, 2.5], "2.5"),  # a fraction in an integer column
    ("name", ["a", 7], "7"),  # a number in a string column
    ("ok", [True, 1], "1"),  # a non-bool in a bool column
    ("rate", [0.5, True], "True"),  # a bool is no number
    ("per_image", [[1.0], 5.0], "5.0"),  # a non-list in a list column
    ("per_image", [[1.0], ["x"]], "['x']"),  # a list whose elements do not fit
])
def test_a_wrong_dtype_is_refused_naming_the_column(column, values, shown):
    with pytest.raises(SchemaError, match=rf"column '{column}' should hold .*, but row 1 "
                                          rf"holds {re.escape(shown)} "):
        TABLE.validate(frame(**{column: values}))


def test_a_missing_column_is_refused_naming_it():
    with pytest.raises(SchemaError, match=r"toy.parquet .*missing columns \['count'\]"):
        TABLE.validate(frame().drop(columns="count"))


def test_an_undeclared_column_is_refused_not_dropped():
    with pytest.raises(SchemaError, match=r"undeclared columns \['extra'\]"):
        TABLE.write(frame(extra=[1, 2]), "/nonexistent/never-written.parquet")


def test_declarations_refuse_unsupported_types_and_twice_declared_columns():
    with pytest.raises(ValueError, match="no value check for Arrow type int32"):
        Column("n", pa.int32(), "count", "a count")
    with pytest.raises(ValueError, match=r"declared twice \['a'\]"):
        TableSchema("t", 1, "", (Column("a", pa.string(), "u", "m"),) * 2)


def test_a_written_file_carries_units_meanings_and_its_version(tmp_path):
    out = tmp_path / "toy.parquet"
    TABLE.write(frame(), out)
    schema = pq.read_schema(out)
    assert schema.metadata[b"table"] == b"toy" and schema.metadata[b"schema_version"] == b"3"
    assert schema.field("rate").metadata == {b"unit": b"fraction 0-1", b"description": b"a share"}
    assert schema.field("count").type == pa.int64()
    df = read_parquet(out)
    assert df.schema_version.tolist() == [3, 3]
    assert df["count"].tolist() == [3, 4] and df.ok.tolist()[0] is True


def test_every_declared_column_has_a_unit_and_a_meaning():
    for table in tables():
        assert table.description
        for column in table.written_columns:
            assert column.unit.strip() and column.meaning.strip(), (table.name, column.name)


def test_docs_results_md_is_the_generators_output():
    """Regenerate with `python -m siblings.results_doc` after changing a declaration."""
    assert (ROOT / "docs/results.md").read_text() == markdown(tables())


def test_every_similarity_metric_is_declared():
    torch = pytest.importorskip("torch")
    from siblings.similarity import SIMILARITIES, Views, compare

    g = torch.Generator().manual_seed(0)
    views = [Views(*(torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3)))
             for _ in range(2)]
    produced = set(compare(*views, SIMILARITIES.names()))
    assert produced <= {c.name for c in SIMILARITY.columns}


def test_a_metric_the_config_leaves_out_is_a_null_column(tmp_path):
    per_arch = pd.DataFrame([{"arch": "a", "source_role": "sibling", "source_id": "q8",
                              "n_similarity": 50, "agreement": 0.9,
                              "similarity_code_version": "c", "similarity_device": "cpu"}])
    sim = similarity_table([per_arch])
    SIMILARITY.write(sim.assign(dataset="d", config_hash="h", run_name="r"),
                     tmp_path / "similarity.parquet")
    written = read_parquet(tmp_path / "similarity.parquet")
    assert written.agreement[0] == 0.9 and written.cka.isna().all()
    assert written.grad_cosine_values[0] is None


def test_a_run_without_query_attacks_or_pairs_writes_empty_declared_tables(tmp_path):
    stamp = {"config_hash": "h", "run_name": "r"}
    rows = pd.DataFrame([{"dataset": "d", "arch": "a", "attack": "pgd", "eps": 0.1,
                          "attack_kind": "transfer", "source_role": "whitebox",
                          "source_id": "seed0", "success_rate": 0.5}])
    QUERIES.write(query_readings(rows, {"pgd": {}}).assign(**stamp), tmp_path / "q.parquet")
    CORRELATIONS.write(correlations(rows).assign(dataset="d", **stamp), tmp_path / "c.parquet")
    assert read_parquet(tmp_path / "q.parquet").empty
    assert list(read_parquet(tmp_path / "c.parquet").columns) == [
        c.name for c in CORRELATIONS.written_columns]
