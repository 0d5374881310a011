#!/usr/bin/env python3
"""Fresh data benchmark: how soon an acknowledged record is answered by SQL under steady load, and what
a query over fresh data (rows in memory and in active files) costs against the same query over the same
rows once they are in stable files.

1. Starts the `openwit` binary with the embedded default's pipeline (OTLP → batch → parquet with its
   defaults: 10-minute rotation; the query extension), and the load generator's steady load of log
   records (`--rate`, default 10,000 items/s, over gRPC) for `--seconds`.
2. Meanwhile, every 250 ms, one probe record (tenant `probe`, a unique body) is sent over OTLP/HTTP;
   from its acknowledgement the probe's query (`count(*) WHERE body = …` as tenant `probe`) is
   repeated every 5 ms until it answers 1. Reported: p50, p99 and max of acknowledgement → visible.
3. With the load stopped and every acknowledged record answered, the query set is timed over the fresh
   rows (medians of `--repeat`, after one warm-up); the daemon is then stopped (its files finalized,
   stored and indexed) and started again, and the same queries are timed over stable files only. Same
   answers checked.

Run through `bench/run-fresh`.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import shutil
import sys
import time
import urllib.request

from common import free_port, openwit_sql, timed, wait_api

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
exporters:
  parquet:
extensions:
  query:
    endpoint: 127.0.0.1:{api}
    timeout: 10m
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

QUERIES = {
    "count": "SELECT count(*) AS n FROM logs",
    "group by service": "SELECT service_name, count(*) AS n FROM logs GROUP BY 1 ORDER BY 2 DESC, 1",
    "last 100 errors": "SELECT time, body FROM logs WHERE severity_text = 'ERROR' ORDER BY time DESC, body LIMIT 100",
    "text_match count": "SELECT count(*) AS n FROM logs WHERE text_match(body, 'timeout')",
}


def start(openwit, cfg, data, log):
    return subprocess.Popen([openwit, "--config", cfg, "--data-dir", data], stdout=log, stderr=log)


def probe(http, api, i):
    body = f"probe-{i}-{time.time_ns()}"
    payload = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": body}}]}]}]}
    req = urllib.request.Request(
        f"http://127.0.0.1:{http}/v1/logs",
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", "x-scope-orgid": "probe"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
    acked = time.perf_counter()
    sql = f"SELECT count(*) AS n FROM logs WHERE body = '{body}'"
    while openwit_sql(api, sql, tenant="probe") != [{"n": 1}]:
        time.sleep(0.005)
    return time.perf_counter() - acked


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def counters(api, sql):
    """Where a query's rows came from (the scan's counters in EXPLAIN ANALYZE)."""
    plan = json.dumps(openwit_sql(api, "EXPLAIN ANALYZE " + sql))
    names = ["memory_rows_scanned", "active_files_scanned", "staged_files_scanned", "stable_files_scanned"]
    return {n: sum(int(v) for v in re.findall(n + r"=(\d+)", plan)) for n in names}


def time_queries(api, repeat):
    out = {}
    for name, sql in QUERIES.items():
        t, rows = timed(lambda: openwit_sql(api, sql), repeat)
        out[name] = {"seconds": t, "rows": rows}
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openwit", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--rate", type=float, default=10_000)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scratch", default="bench/results/fresh")
    p.add_argument("--json", default="bench/results/fresh.json")
    a = p.parse_args()

    shutil.rmtree(a.scratch, ignore_errors=True)
    os.makedirs(a.scratch)
    ports = {"grpc": free_port(), "http": free_port(), "api": free_port(), "metrics": free_port()}
    cfg = os.path.join(a.scratch, "config.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(**ports))
    data = os.path.join(a.scratch, "data")
    log = open(os.path.join(a.scratch, "openwit.log"), "w")
    daemon = start(a.openwit, cfg, data, log)
    try:
        wait_api(ports["api"])
        load = subprocess.Popen(
            [a.loadgen, "run", "--endpoint", f"127.0.0.1:{ports['grpc']}", "--signal", "logs", "--rate",
             str(a.rate), "--duration", f"{a.seconds}s", "--items-per-request", "500", "--distinct-requests",
             "256", "--json"],
            stdout=subprocess.PIPE,
        )
        latencies = []
        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < a.seconds - 1:
            t = time.perf_counter()
            latencies.append(probe(ports["http"], ports["api"], i))
            i += 1
            time.sleep(max(0.0, 0.25 - (time.perf_counter() - t)))
        report = json.loads(load.communicate()[0])
        acked = report["items_acked"]
        visibility = {
            "probes": len(latencies),
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000,
        }
        print(f"ack → visible over {len(latencies)} probes: p50 {visibility['p50_ms']:.0f} ms, "
              f"p99 {visibility['p99_ms']:.0f} ms, max {visibility['max_ms']:.0f} ms", flush=True)
        # Every acknowledged record answered (the batch processor's timeout at most).
        for _ in range(100):
            n = openwit_sql(ports["api"], QUERIES["count"])[0]["n"]
            if n >= acked:
                break
            time.sleep(0.1)
        fresh_where = counters(ports["api"], QUERIES["count"])
        fresh = time_queries(ports["api"], a.repeat)
        print("fresh:", {k: round(v["seconds"] * 1000, 1) for k, v in fresh.items()}, fresh_where, flush=True)

        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=600)
        daemon = start(a.openwit, cfg, data, log)
        wait_api(ports["api"])
        # Stable and indexed: every file stable, the text query answered by indexes alone.
        for _ in range(600):
            plan = json.dumps(openwit_sql(ports["api"], "EXPLAIN ANALYZE " + QUERIES["text_match count"]))
            if "index_files_without_usable_index=0" in plan:
                break
            time.sleep(0.5)
        stable_where = counters(ports["api"], QUERIES["count"])
        stable = time_queries(ports["api"], a.repeat)
        print("stable:", {k: round(v["seconds"] * 1000, 1) for k, v in stable.items()}, stable_where, flush=True)
        for name in QUERIES:
            if fresh[name]["rows"] != stable[name]["rows"]:
                raise SystemExit(f"{name}: fresh {fresh[name]['rows']} != stable {stable[name]['rows']}")
    finally:
        daemon.terminate()
        daemon.wait()
    result = {
        "rate": a.rate,
        "seconds": a.seconds,
        "records": fresh["count"]["rows"][0]["n"],
        "loadgen": report,
        "visibility": visibility,
        "fresh": {k: v["seconds"] for k, v in fresh.items()},
        "stable": {k: v["seconds"] for k, v in stable.items()},
        "fresh_sources": fresh_where,
        "stable_sources": stable_where,
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
    print()
    print(f"| query ({result['records']:,} records) | fresh (memory + active files) | stable files | fresh ÷ stable |")
    print("|---|---|---|---|")
    for name in QUERIES:
        fr, st = result["fresh"][name], result["stable"][name]
        print(f"| {name} | {fr * 1000:.1f} ms | {st * 1000:.1f} ms | {fr / st:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
