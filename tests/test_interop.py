"""Every Parquet file of a run reads unchanged with pandas, pyarrow, polars and duckdb."""

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

FILES = [
    "trials",
    "epochs",
    "val_predictions",
    "comparison",
    "test_eval",
    "confusion",
    "test_predictions",
    "test_pairs",
]


@pytest.mark.parametrize("name", FILES)
def test_parquet_reads_the_same_everywhere(small_run, name):
    path = small_run / f"{name}.parquet"
    frame = pd.read_parquet(path)
    table = pq.read_table(path)
    polars_frame = pl.read_parquet(path)
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
    assert len(frame) > 0
    assert len(frame) == table.num_rows == polars_frame.height == relation.shape[0]
    assert list(frame.columns) == table.column_names == polars_frame.columns == relation.columns
    # No column lost its type: nothing untyped (all-null) or pickled as Python objects.
    assert not any(pa.types.is_null(field.type) for field in table.schema), table.schema
    assert not any(dtype in (pl.Null, pl.Object) for dtype in polars_frame.dtypes)
    assert "NULL" not in {str(t) for t in relation.types}


def test_ids_are_strings_and_metrics_floats_everywhere(small_run):
    path = small_run / "trials.parquet"
    schema = pq.read_schema(path)
    assert pa.types.is_string(schema.field("trial_id").type) or pa.types.is_large_string(
        schema.field("trial_id").type
    )
    assert schema.field("best_val_acc").type == pa.float64()
    assert pl.read_parquet(path).schema["best_val_acc"] == pl.Float64
    types = dict(
        duckdb.sql(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{path}'))"
        ).fetchall()
    )
    assert (
        types["trial_id"] == "VARCHAR"
        and types["best_val_acc"] == "DOUBLE"
        and types["epochs_run"] == "BIGINT"
    )
