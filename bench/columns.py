#!/usr/bin/env python3
"""Bytes per row of each leaf column of the Parquet files under a directory (their footers' compressed
sizes), largest first, with each column's encodings: where a table's bytes go. Run it on the files of
`openwit-bench --storage-only --keep-files DIR` (DIR/spans, DIR/logs, DIR/metrics) or on a bucket's
table directory. Needs pyarrow (`bench/.venv`, which `bench/run-query` installs, has it):

    bench/.venv/bin/python bench/columns.py /tmp/kept/logs
"""
import argparse
import collections
import glob
import os

import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--min", type=float, default=0.01, help="leave out columns under this many bytes per row")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.dir, "**", "*.parquet"), recursive=True))
    if not files:
        raise SystemExit(f"no .parquet files under {args.dir}")
    size = collections.Counter()
    encodings = collections.defaultdict(set)
    rows = total = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        rows += md.num_rows
        total += os.path.getsize(f)
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                size[col.path_in_schema] += col.total_compressed_size
                encodings[col.path_in_schema].update(col.encodings)
    if rows == 0:
        raise SystemExit(f"the files under {args.dir} hold no rows")
    print(f"{len(files)} files, {rows} rows, {total / rows:.2f} bytes per row (whole files)")
    for name, n in size.most_common():
        if n / rows >= args.min:
            print(f"{n / rows:8.2f}  {name}  ({', '.join(sorted(encodings[name]))})")


if __name__ == "__main__":
    main()
