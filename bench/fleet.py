#!/usr/bin/env python3
"""Fleet benchmark: several daemons on one PostgreSQL catalog and one bucket (a shared directory).

1. Ingest with 1, 2 and 3 daemons at once, each sent ITEMS spans at RATE per second by its own load
   generator (distinct seeds), compaction off: CPU-seconds per million spans (summed over the daemons), and catalog
   transactions per thousand spans (PostgreSQL's `xact_commit`), which must not grow with the fleet.
   Every daemon rotates its files each second (a minute's rotation scaled down 60 times), the shape of
   an edge fleet's store.
2. The 3-daemon store: objects, bytes, bytes per span and the query set's times; then the three daemons restarted
   with compaction on, and the same figures once every hour's small files are merged. Same answers
   checked.

PostgreSQL is Debian's (`initdb`/`postgres`, as tests/run installs it), started in the scratch
directory. Run through `bench/run-fleet`.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from common import cpu_seconds, free_port, openwit_sql, timed, wait_api

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
    endpoint: {bucket}
    rotation:
      max_age: {rotation}
    index:
      enabled: false
    compaction:
      enabled: {compaction}
      interval: 1s
      min_age: 0s
      grace_period: 2s
extensions:
  catalog:
    url: {catalog}
  query:
    endpoint: 127.0.0.1:{api}
    max_rows: 1000
    timeout: 10m
    max_memory_megabytes: 4096
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

QUERIES = {
    "count": "SELECT count(*) AS n FROM spans",
    "spans per service": "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
    "median duration per service": "SELECT service_name, median(duration_ns) AS m FROM spans GROUP BY 1 ORDER BY 1",
    "errors per minute": "SELECT date_bin(INTERVAL '1 minute', time) AS m, count(*) AS n FROM spans WHERE status_code = 2 GROUP BY 1 ORDER BY 1",
    "slowest 20": "SELECT name, duration_ns FROM spans ORDER BY duration_ns DESC, name LIMIT 20",
    "one trace": None,  # filled in from the data
}


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit("PostgreSQL not found: install Debian's postgresql package (tests/run does)")
    return found[-1]


def start_postgres(scratch):
    data = os.path.join(scratch, "pg")
    # PostgreSQL refuses to run as root: as the `postgres` user Debian's package makes.
    as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"] if os.geteuid() == 0 else []
    os.makedirs(data)
    if as_user:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(as_user + [pg_bin("initdb"), "-D", data, "-U", "openwit", "--auth=trust", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    pg = subprocess.Popen(as_user + [pg_bin("postgres"), "-D", data, "-p", str(port), "-c",
                                     "listen_addresses=127.0.0.1", "-k", scratch],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return pg, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("PostgreSQL did not start")


def psql(port, db, sql):
    out = subprocess.run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "openwit", "-d", db,
                          "-At", "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Fleet:
    def __init__(self, a, scratch, catalog, bucket, rotation, compaction, n):
        self.nodes = []
        for i in range(n):
            d = os.path.join(scratch, f"node{i}")
            os.makedirs(d, exist_ok=True)
            ports = {"grpc": free_port(), "api": free_port(), "metrics": free_port()}
            cfg = os.path.join(d, "config.yaml")
            with open(cfg, "w") as f:
                f.write(CONFIG.format(bucket=bucket, rotation=rotation, compaction=str(compaction).lower(),
                                      catalog=catalog, **ports))
            log = open(os.path.join(d, "openwit.log"), "a")
            p = subprocess.Popen([a.openwit, "--config", cfg, "--data-dir", os.path.join(d, "data")],
                                 stdout=log, stderr=log)
            self.nodes.append((p, ports))
        for _, ports in self.nodes:
            wait_api(ports["api"], 60)

    def api(self):
        return self.nodes[0][1]["api"]

    def stop(self):
        for p, _ in self.nodes:
            p.send_signal(signal.SIGTERM)
        for p, _ in self.nodes:
            p.wait(timeout=600)


def load(a, fleet, items):
    loads = [
        subprocess.Popen([a.loadgen, "run", "--endpoint", f"127.0.0.1:{ports['grpc']}", "--signal", "traces",
                          "--total-items", str(items), "--items-per-request", "500", "--distinct-requests",
                          str(items // 500), "--concurrency", "4", "--seed", str(i + 1), "--rate", str(a.rate)],
                         stdout=subprocess.DEVNULL)
        for i, (_, ports) in enumerate(fleet.nodes)
    ]
    for l in loads:
        if l.wait() != 0:
            raise SystemExit("the load generator failed")


def wait_stored(api, total):
    for _ in range(6000):
        n = openwit_sql(api, "SELECT coalesce(sum(row_count), 0) AS n FROM files WHERE state = 'stable'")[0]["n"]
        if n >= total:
            return
        time.sleep(0.1)
    raise SystemExit(f"only {n} of {total} spans stored")


def store_figures(api, bucket_dir, total, repeat):
    objects = [p for p in glob.glob(os.path.join(bucket_dir, "**", "*.parquet"), recursive=True)]
    size = sum(os.path.getsize(p) for p in objects)
    queries = dict(QUERIES)
    trace = openwit_sql(api, "SELECT id_to_hex(trace_id) AS t FROM spans ORDER BY time, span_id LIMIT 1 OFFSET 1000")[0]["t"]
    queries["one trace"] = f"SELECT span_id, name FROM spans WHERE trace_id = '{trace}' ORDER BY span_id"
    times, answers = {}, {}
    for name, sql in queries.items():
        t, rows = timed(lambda: openwit_sql(api, sql), repeat)
        times[name], answers[name] = t, rows
    return {"objects": len(objects), "bytes": size, "bytes_per_span": size / total, "queries": times}, answers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openwit", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--items", type=int, default=100_000, help="spans per daemon")
    p.add_argument("--rate", type=float, default=5_000, help="spans per second per daemon (steady load)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scratch", default="bench/results/fleet")
    p.add_argument("--json", default="bench/results/fleet.json")
    a = p.parse_args()
    scratch = os.path.abspath(a.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    os.chmod(scratch, 0o777)
    pg, port = start_postgres(scratch)
    result = {"items_per_daemon": a.items, "ingest": {}}
    try:
        for n in (1, 2, 3):
            db = f"fleet{n}"
            psql(port, "postgres", f"CREATE DATABASE {db}")
            bucket = os.path.join(scratch, f"bucket{n}")
            catalog = f"postgres://openwit@127.0.0.1:{port}/{db}"
            rotation = "1s"
            fleet = Fleet(a, os.path.join(scratch, f"fleet{n}"), catalog, bucket, rotation, False, n)
            xact0 = int(psql(port, db, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))
            cpu0 = [cpu_seconds(p.pid) for p, _ in fleet.nodes]
            load(a, fleet, a.items)
            wait_stored(fleet.api(), n * a.items)
            cpu = sum(cpu_seconds(p.pid) - c for (p, _), c in zip(fleet.nodes, cpu0))
            xact = int(psql(port, db, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'")) - xact0
            result["ingest"][n] = {
                "cpu_s_per_million": cpu / (n * a.items) * 1e6,
                "catalog_transactions_per_thousand": xact / (n * a.items) * 1000,
            }
            print(f"{n} daemon(s): {result['ingest'][n]}", flush=True)
            if n < 3:
                fleet.stop()
                continue
            before, answers = store_figures(fleet.api(), bucket, n * a.items, a.repeat)
            print("before compaction:", before, flush=True)
            fleet.stop()
            fleet = Fleet(a, os.path.join(scratch, "fleet3"), catalog, bucket, "1s", True, n)
            started = time.time()
            last, steady = None, 0
            while steady < 5:
                files = openwit_sql(fleet.api(), "SELECT count(*) AS n FROM files")[0]["n"]
                steady = steady + 1 if files == last else 0
                last = files
                time.sleep(1)
            result["compaction_seconds"] = time.time() - started - 5
            after, answers_after = store_figures(fleet.api(), bucket, n * a.items, a.repeat)
            print("after compaction:", after, flush=True)
            for name in answers:
                if answers[name] != answers_after[name]:
                    raise SystemExit(f"{name}: answers differ after compaction")
            result["before"], result["after"] = before, after
            fleet.stop()
    finally:
        pg.terminate()
        pg.wait()
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
    print()
    print("| daemons | CPU-s per million spans | catalog transactions per 1,000 spans |")
    print("|---|---|---|")
    for n, r in result["ingest"].items():
        print(f"| {n} | {r['cpu_s_per_million']:.2f} | {r['catalog_transactions_per_thousand']:.2f} |")
    b, c = result["before"], result["after"]
    print()
    print("| | before compaction | after | after ÷ before |")
    print("|---|---|---|---|")
    print(f"| objects | {b['objects']} | {c['objects']} | {c['objects'] / b['objects']:.3f} |")
    print(f"| bytes per span | {b['bytes_per_span']:.1f} | {c['bytes_per_span']:.1f} | {c['bytes_per_span'] / b['bytes_per_span']:.2f} |")
    for name in b["queries"]:
        x, y = b["queries"][name], c["queries"][name]
        print(f"| {name} | {x * 1000:.1f} ms | {y * 1000:.1f} ms | {y / x:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
