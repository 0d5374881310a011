#!/usr/bin/env python3
"""Full-text search benchmark: OpenWit's text_match with and without the index beside each logs file,
and DuckDB scanning the very same Parquet files, in one run.

Starts the `openwit` binary (parquet exporter with indexes, query extension), sends N log records from
the load generator (its templates and variable parts), waits until every logs file is stored,
compacted and indexed, picks words of the data by how often they occur (rare ≈ 1 in a million records, medium ≈
0.1 %, common ≈ 10 %), then times each query on three engines and checks they give the same answer:

- OpenWit with the index: `text_match(body, 'word')`;
- OpenWit without it: the same condition under an `OR` that matches nothing, which the scan cannot
  take over, so it is evaluated on every row read;
- DuckDB: `regexp_matches` on the lower-cased body with the same word boundaries as OpenWit's
  tokenizer (runs of letters and digits); `ILIKE '%word%'` is timed too (a substring: more rows).

Also reported: index bytes ÷ Parquet bytes of the logs files, and the bytes each OpenWit query read
(DataFusion's `bytes_scanned`). Each query is warmed once, then timed REPEAT times; medians reported.
Run through `bench/run-search`.
"""

import argparse
import json
import os
import re
import sys
import time

import duckdb

from common import openwit_sql, settled_files, start_and_load, timed

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
exporters:
  parquet:
    rotation:
      max_age: 30s
extensions:
  query:
    endpoint: 127.0.0.1:{api}
    max_rows: 100000
    timeout: 10m
    max_memory_megabytes: 4096
    index_cache_megabytes: 2048
service:
  extensions: [query]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"""

NEVER = "openwit-bench: no body is this"


def bytes_scanned(api, sql):
    """Bytes the plan's Parquet scans read (DataFusion prints counts as `12.34 M`)."""
    plan = json.dumps(openwit_sql(api, f"EXPLAIN ANALYZE {sql}"))
    unit = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    return sum(float(v) * unit[u] for v, u in re.findall(r"bytes_scanned=([\d.]+)(?: ([KMBT]))?", plan))


def words_regex(words):
    """DuckDB's regexp for words in this order, as OpenWit's tokenizer separates them."""
    return "(^|[^a-z0-9])" + "[^a-z0-9]+".join(words) + "([^a-z0-9]|$)"


def values(rows):
    return [tuple(str(v) for v in (r.values() if isinstance(r, dict) else r)) for r in rows]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openwit", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--records", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scratch", default="bench/results/search")
    p.add_argument("--json", default="bench/results/search.json")
    a = p.parse_args()

    t = time.time()
    daemon, data, acknowledged = start_and_load(
        a.openwit, a.loadgen, a.scratch, CONFIG, {"grpc": 25317, "api": 25383, "metrics": 25388}, "logs", a.records
    )
    api = 25383
    try:
        paths, parquet_bytes, index_bytes = settled_files(data, "logs", acknowledged, indexed=True)
        files = len(paths)
        print(
            f"{acknowledged} of {a.records} log records acknowledged, stored, compacted and indexed in "
            f"{time.time() - t:.0f} s ({files} files)",
            file=sys.stderr,
            flush=True,
        )

        con = duckdb.connect()
        con.execute("SET threads TO 2")
        # DuckDB spills to `.tmp/` in the working directory (the checkout) by default: keep it in the scratch.
        con.execute(f"SET temp_directory = '{os.path.join(a.scratch, 'duckdb.tmp')}'")
        listed = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
        con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet({listed})")
        # Words by how many records hold them (a word is counted once per record: de-duplicated within
        # each record's list, which needs no DISTINCT over the whole table; that one spilled to disk at
        # 10M records and ran for over 40 minutes).
        t = time.time()
        counts = con.execute(
            "SELECT w, count(*) AS n FROM (SELECT unnest(list_distinct(string_split_regex(lower(body), '[^a-z0-9]+'))) AS w "
            "FROM logs) WHERE length(w) >= 3 GROUP BY 1"
        ).fetchall()
        print(f"word frequencies in {time.time() - t:.0f} s", file=sys.stderr, flush=True)

        def closest(target):
            return min(counts, key=lambda wc: (abs(wc[1] - target), wc[0]))

        picks = {
            "rare": closest(max(1, a.records // 1_000_000)),
            "medium": closest(a.records // 1_000),
            "common": closest(a.records // 10),
        }
        phrase = ["connection", "reset"]
        queries = []
        for kind, (word, n) in picks.items():
            queries.append((f"{kind} word `{word}` ({n} records), count", f"text_match(body, '{word}')", [word], "count"))
        queries.append(("phrase `\"connection reset\"`, count", "text_match(body, '\"connection reset\"')", phrase, "count"))
        rare = picks["rare"][0]
        queries.append((f"last 100 records with the rare word", f"text_match(body, '{rare}')", [rare], "last"))

        results = []
        for name, cond, words, shape in queries:
            regex = words_regex(words)
            if shape == "count":
                ow = f"SELECT count(*) AS n FROM logs WHERE {cond}"
                ow_scan = f"SELECT count(*) AS n FROM logs WHERE ({cond} OR body = '{NEVER}')"
                dd = f"SELECT count(*) AS n FROM logs WHERE regexp_matches(lower(body), '{regex}')"
                dd_like = f"SELECT count(*) AS n FROM logs WHERE body ILIKE '%{' '.join(words)}%'"
            else:
                ow = f"SELECT body FROM logs WHERE {cond} ORDER BY time DESC, body LIMIT 100"
                ow_scan = f"SELECT body FROM logs WHERE ({cond} OR body = '{NEVER}') ORDER BY time DESC, body LIMIT 100"
                dd = f"SELECT body FROM logs WHERE regexp_matches(lower(body), '{regex}') ORDER BY time DESC, body LIMIT 100"
                dd_like = f"SELECT body FROM logs WHERE body ILIKE '%{' '.join(words)}%' ORDER BY time DESC, body LIMIT 100"
            ow_t, ow_rows = timed(lambda: openwit_sql(api, ow), a.repeat)
            scan_t, scan_rows = timed(lambda: openwit_sql(api, ow_scan), max(1, a.repeat // 2))
            dd_t, dd_rows = timed(lambda: con.execute(dd).fetchall(), a.repeat)
            like_t, _ = timed(lambda: con.execute(dd_like).fetchall(), a.repeat)
            same = values(ow_rows) == values(dd_rows) == values(scan_rows)
            read_with, read_without = bytes_scanned(api, ow), bytes_scanned(api, ow_scan)
            row = {
                "query": name,
                "openwit_index_s": ow_t,
                "openwit_scan_s": scan_t,
                "duckdb_regexp_s": dd_t,
                "duckdb_ilike_s": like_t,
                "index_vs_duckdb": ow_t / dd_t,
                "bytes_read_with_index": read_with,
                "bytes_read_without_index": read_without,
                "same_answer": same,
                "rows": len(ow_rows) if shape == "last" else ow_rows[0]["n"],
            }
            results.append(row)
            print(
                f"{name:55} index {ow_t * 1000:8.1f} ms  scan {scan_t * 1000:9.1f} ms  duckdb regexp {dd_t * 1000:8.1f} ms"
                f"  ilike {like_t * 1000:8.1f} ms  ÷duckdb {ow_t / dd_t:6.3f}  read {read_with / 1e6:7.1f} / {read_without / 1e6:7.1f} MB"
                f"  same answer: {same}",
                flush=True,
            )
        summary = {
            "records": a.records,
            "files": files,
            "parquet_bytes": parquet_bytes,
            "index_bytes": index_bytes,
            "index_vs_parquet": index_bytes / parquet_bytes,
            "duckdb": duckdb.__version__,
            "repeat": a.repeat,
            "results": results,
        }
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
        print(
            f"{files} logs files, Parquet {parquet_bytes / 1e6:.0f} MB, indexes {index_bytes / 1e6:.0f} MB "
            f"({index_bytes / parquet_bytes:.2f} of the Parquet bytes); DuckDB {duckdb.__version__}; medians of {a.repeat}"
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
