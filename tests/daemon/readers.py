#!/usr/bin/env python3
"""Reads OpenWit's Parquet files with two other readers, pyarrow and DuckDB, each decoding every column
of every row, and exits non-zero unless both read each file alike: the same columns, the same number
of rows, the same value in every cell. Prints, as JSON, what the test compares with what it sent: each
file's rows and, sorted, the values of one column (spans' `name`, log records' `body`, metric points'
`metric_name`).

Usage: readers.py FILE.parquet...   (run by tests/daemon/readers.rs with the venv tests/run installs)
"""

import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

# The column of each table the test checks against what it sent.
SENT_COLUMN = {"spans": "name", "logs": "body", "metrics": "metric_name"}


def with_timestamps(t: pa.DataType, unit_of) -> pa.DataType:
    """`t` with each timestamp inside it (at any depth) replaced by `unit_of(timestamp type)`."""
    if pa.types.is_timestamp(t):
        return unit_of(t)
    if pa.types.is_dictionary(t):
        return with_timestamps(t.value_type, unit_of)
    if pa.types.is_map(t):
        return pa.map_(with_timestamps(t.key_type, unit_of), with_timestamps(t.item_type, unit_of))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        item = t.value_field.with_type(with_timestamps(t.value_type, unit_of))
        return pa.list_(item) if pa.types.is_list(t) else pa.large_list(item)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(with_timestamps(f.type, unit_of)) for f in t])
    return t


def comparable(column: pa.ChunkedArray) -> str:
    """A column's values as text both readers' columns can be compared in: times as microseconds since
    the epoch (DuckDB reads nanosecond times as microseconds), bytes as hex, dictionaries decoded."""
    micros = with_timestamps(column.type, lambda t: pa.timestamp("us", t.tz))
    column = column.cast(micros, safe=False).cast(with_timestamps(micros, lambda _: pa.int64()))
    return json.dumps(column.to_pylist(), default=lambda v: v.hex() if isinstance(v, bytes) else str(v))


def main(paths):
    con = duckdb.connect()
    con.execute("SET threads = 1")  # rows in the file's order
    out = {}
    for path in paths:
        ours = pq.read_table(path)
        rows = con.read_parquet(path)
        # (DuckDB 2 names it `to_arrow_table`; before, `arrow` gave the table.)
        theirs = (getattr(rows, "to_arrow_table", None) or rows.arrow)()
        if ours.column_names != theirs.column_names:
            sys.exit(f"{path}: pyarrow reads columns {ours.column_names}, DuckDB {theirs.column_names}")
        if ours.num_rows != theirs.num_rows:
            sys.exit(f"{path}: pyarrow reads {ours.num_rows} rows, DuckDB {theirs.num_rows}")
        for name in ours.column_names:
            a, b = comparable(ours.column(name)), comparable(theirs.column(name))
            if a != b:
                sys.exit(f"{path}: column {name} differs between pyarrow and DuckDB:\n{a[:400]}\n{b[:400]}")
        table = (pq.ParquetFile(path).metadata.metadata or {}).get(b"openwit.table", b"").decode()
        column = SENT_COLUMN.get(table)
        values = sorted(ours.column(column).to_pylist()) if column else []
        out[path] = {"table": table, "rows": ours.num_rows, "values": values}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
