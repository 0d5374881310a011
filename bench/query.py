#!/usr/bin/env python3
"""Query benchmark: OpenWit's SQL API beside DuckDB reading the very same Parquet files, in one run.

Starts the release `openwit` with the parquet exporter and the query extension, sends N spans from the
load generator (every span distinct), waits until all are in stable files, then runs a fixed query set
against both engines (each query warmed once, then timed REPEAT times; the median is reported) and
checks that both engines return the same answer. Run through `bench/run-query`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import duckdb

from common import openwit_sql, settled_files, start_and_load, timed, wait_api

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
      max_age: 20s
extensions:
  query:
    endpoint: 127.0.0.1:{api}
    max_rows: 1000
    timeout: 10m
    max_memory_megabytes: 4096
{datafusion}
service:
  extensions: [query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"""


def normalise(rows):
    """Rows as sorted tuples of rounded values, so both engines' answers compare."""
    out = []
    for r in rows:
        vals = []
        for v in (r.values() if isinstance(r, dict) else r):
            if isinstance(v, float):
                # Nine significant digits: both engines sum in their own order.
                v = f"{v:.9g}"
            elif isinstance(v, (bytes, bytearray)):
                v = v.hex()
            vals.append(str(v))
        out.append(tuple(vals))
    return sorted(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openwit", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--spans", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scratch", default="bench/results/query")
    p.add_argument("--json", default="bench/results/query.json")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="after the run, restart OpenWit on the same files with these DataFusion options "
        "(extensions.query.datafusion) and time its queries again (repeatable), e.g. "
        "'pushdown:datafusion.execution.parquet.pushdown_filters=true'",
    )
    p.add_argument(
        "--variant-binary",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="after the run, restart another OpenWit binary on the same files and time its queries again "
        "(repeatable): a before/after of a change to the engine on the very same files",
    )
    a = p.parse_args()
    variants = []
    for v in a.variant:
        name, _, settings = v.partition(":")
        pairs = [kv.split("=", 1) for kv in settings.split(",") if kv]
        if not name or any(len(kv) != 2 for kv in pairs):
            raise SystemExit(f"--variant {v!r}: use NAME:KEY=VALUE[,KEY=VALUE]")
        variants.append((name, pairs, a.openwit))
    for v in a.variant_binary:
        name, _, path = v.partition("=")
        if not name or not os.path.isfile(path):
            raise SystemExit(f"--variant-binary {v!r}: use NAME=PATH of an OpenWit binary")
        variants.append((name, [], path))
    ports = {"grpc": 24317, "api": 24383, "metrics": 24388}

    t = time.time()
    daemon, data, acknowledged = start_and_load(
        a.openwit, a.loadgen, a.scratch, CONFIG.replace("{datafusion}", ""), ports, "traces", a.spans
    )
    api = 24383
    try:
        paths, stored_bytes, _ = settled_files(data, "spans", acknowledged)
        print(
            f"{acknowledged} of {a.spans} spans acknowledged, stored and compacted in {time.time() - t:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        files = {"n": len(paths), "b": stored_bytes}
        rng = openwit_sql(api, "SELECT min(time) AS lo, max(time) AS hi FROM spans")[0]
        # A window of a tenth of the data's time, in the middle; a trace id from inside it.
        lo, hi = rng["lo"], rng["hi"]
        mid = openwit_sql(
            api,
            f"SELECT to_unixtime(min(time)) + (to_unixtime(max(time)) - to_unixtime(min(time))) * 0.45 AS a, "
            f"to_unixtime(min(time)) + (to_unixtime(max(time)) - to_unixtime(min(time))) * 0.55 AS b FROM spans",
        )[0]
        w0, w1 = mid["a"], mid["b"]
        trace = openwit_sql(
            api, f"SELECT id_to_hex(trace_id) AS t FROM spans WHERE time >= to_timestamp({w0}) LIMIT 1"
        )[0]["t"]

        con = duckdb.connect()
        con.execute("SET threads TO 2")
        # DuckDB spills to `.tmp/` in the working directory (the checkout) by default: keep it in the scratch.
        con.execute(f"SET temp_directory = '{os.path.join(a.scratch, 'duckdb.tmp')}'")
        listed = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
        con.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet({listed})")
        window_ow = f"time >= to_timestamp({w0}) AND time < to_timestamp({w1})"
        window_dd = f"time >= to_timestamp({w0}) AND time < to_timestamp({w1})"
        queries = [
            ("count all spans", "SELECT count(*) AS n FROM spans", "SELECT count(*) AS n FROM spans"),
            (
                "latency per service, 10% time window",
                f"SELECT service_name, count(*) AS n, avg(duration_ns) AS avg_ns, max(duration_ns) AS max_ns FROM spans WHERE {window_ow} GROUP BY 1",
                f"SELECT service_name, count(*) AS n, avg(duration_ns) AS avg_ns, max(duration_ns) AS max_ns FROM spans WHERE {window_dd} GROUP BY 1",
            ),
            (
                "error rate per service, all time",
                "SELECT service_name, avg(CASE WHEN status_code = 2 THEN 1.0 ELSE 0.0 END) AS rate FROM spans GROUP BY 1",
                "SELECT service_name, avg(CASE WHEN status_code = 2 THEN 1.0 ELSE 0.0 END) AS rate FROM spans GROUP BY 1",
            ),
            (
                "trace by id",
                f"SELECT id_to_hex(span_id) AS s, name FROM spans WHERE trace_id = '{trace}'",
                f"SELECT lower(hex(span_id)) AS s, name FROM spans WHERE trace_id = from_hex('{trace}')",
            ),
            (
                # A route the generator never sends: no span matches (the index skips the file).
                "attribute filter (http.route), count",
                "SELECT count(*) AS n FROM spans WHERE attributes['http.route'] = '/api/cart'",
                "SELECT count(*) AS n FROM spans WHERE map_extract(attributes, 'http.route')[1] = '/api/cart'",
            ),
            (
                # A route ~2 % of the spans have.
                "attribute filter (http.route = /cart), count",
                "SELECT count(*) AS n FROM spans WHERE attributes['http.route'] = '/cart'",
                "SELECT count(*) AS n FROM spans WHERE map_extract(attributes, 'http.route')[1] = '/cart'",
            ),
            (
                "10 slowest spans in the window",
                f"SELECT id_to_hex(trace_id) AS t, duration_ns FROM spans WHERE {window_ow} ORDER BY duration_ns DESC LIMIT 10",
                f"SELECT lower(hex(trace_id)) AS t, duration_ns FROM spans WHERE {window_dd} ORDER BY duration_ns DESC LIMIT 10",
            ),
        ]
        results = []
        duck_rows = []
        for name, ow_sql, dd_sql in queries:
            ow_t, ow_rows = timed(lambda: openwit_sql(api, ow_sql), a.repeat)
            dd_t, dd_rows = timed(lambda: con.execute(dd_sql).fetchall(), a.repeat)
            same = normalise(ow_rows) == normalise(dd_rows)
            duck_rows.append(dd_rows)
            results.append({"query": name, "openwit_s": ow_t, "duckdb_s": dd_t, "ratio": ow_t / dd_t, "same_answer": same})
            print(f"{name:40} openwit {ow_t * 1000:9.1f} ms  duckdb {dd_t * 1000:9.1f} ms  ratio {ow_t / dd_t:5.2f}  same answer: {same}")
        # Each variant: the same files, OpenWit restarted with other DataFusion options or as another
        # binary, against the DuckDB times above.
        for vname, pairs, binary in variants:
            daemon.terminate()
            daemon.wait(timeout=120)
            options = "".join(f"\n      {k}: {v}" for k, v in pairs)
            cfg = os.path.join(a.scratch, "config.yaml")
            with open(cfg, "w") as f:
                f.write(CONFIG.replace("{datafusion}", "    datafusion:" + options if pairs else "").format(**ports))
            with open(os.path.join(a.scratch, f"openwit-{vname}.log"), "w") as log:
                daemon = subprocess.Popen([binary, "--config", cfg, "--data-dir", data], stdout=log, stderr=log)
            wait_api(api)
            for (name, ow_sql, _), r, dd_rows in zip(queries, results, duck_rows):
                ow_t, ow_rows = timed(lambda: openwit_sql(api, ow_sql), a.repeat)
                same = normalise(ow_rows) == normalise(dd_rows)
                r.setdefault("variants", {})[vname] = {"openwit_s": ow_t, "ratio": ow_t / r["duckdb_s"], "same_answer": same}
                print(
                    f"{vname + ': ' + name:40} openwit {ow_t * 1000:9.1f} ms  ratio {ow_t / r['duckdb_s']:5.2f}  same answer: {same}"
                )
        summary = {
            "spans": a.spans,
            "files": files["n"],
            "bytes": files["b"],
            "time_range": [lo, hi],
            "duckdb": duckdb.__version__,
            "repeat": a.repeat,
            "results": results,
        }
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"{files['n']} files, {files['b'] / 1e6:.0f} MB; DuckDB {duckdb.__version__}; medians of {a.repeat}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
