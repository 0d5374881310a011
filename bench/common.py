"""What the Python benchmarks share: OpenWit's SQL API, timing, and starting a daemon loaded by the
load generator."""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


def evict_from_page_cache(path):
    """Drops `path`'s pages from the kernel's page cache (clean pages only; no privilege needed), so that
    a daemon started from it maps its code as any cold start does. A binary just built or copied is in
    the cache whole, and the kernel then maps the cached neighbours of every page the daemon runs
    (fault-around): the same binary's `RssFile` was 88-91 MiB fresh from a copy and 66-68 MiB from a
    cold cache (docs/BENCHMARKS.md § Memory, "The binary's code in RSS")."""
    path = os.path.realpath(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def openwit_sql(api, sql, tenant=None):
    headers = {"content-type": "application/json"}
    if tenant:
        headers["x-scope-orgid"] = tenant
    req = urllib.request.Request(
        f"http://127.0.0.1:{api}/api/v1/query",
        data=json.dumps({"sql": sql, "format": "json"}).encode(),
        headers=headers,
    )
    try:
        with urllib.request.urlopen(req, timeout=1200) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"OpenWit refused {sql!r}: {e.read().decode()}")


def timed(fn, repeat):
    """The median of `repeat` timed calls after one warm-up call (footers, indexes and pages cached)."""
    fn()
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def start_and_load(openwit, loadgen, scratch, config, ports, signal, items):
    """Starts `openwit` with `config` (formatted with `ports`) in a fresh `scratch`, waits for its query
    API, sends `items` distinct items of `signal` from the load generator; returns the process, the
    data directory and how many items the daemon acknowledged (under overload it refuses some requests,
    retryably, as it should: those items are not stored, and waiting for them would never end)."""
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    cfg = os.path.join(scratch, "config.yaml")
    with open(cfg, "w") as f:
        f.write(config.format(**ports))
    data = os.path.join(scratch, "data")
    log = open(os.path.join(scratch, "openwit.log"), "w")
    daemon = subprocess.Popen([openwit, "--config", cfg, "--data-dir", data], stdout=log, stderr=log)
    wait_api(ports["api"])
    per_request = 500
    try:
        run = subprocess.run(
            [loadgen, "run", "--endpoint", f"127.0.0.1:{ports['grpc']}", "--signal", signal, "--total-items",
             str(items), "--items-per-request", str(per_request), "--distinct-requests", str(items // per_request),
             "--concurrency", "8"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        print(run.stdout, end="", file=sys.stderr)
        acknowledged = re.search(r"acknowledged (\d+)", run.stdout)
        if acknowledged is None:
            raise RuntimeError(f"the load generator did not say how many items were acknowledged: {run.stdout!r}")
    except BaseException:
        daemon.terminate()
        raise
    return daemon, data, int(acknowledged.group(1))


def settled_files(data, table, acknowledged, indexed=False, quiet=75):
    """Waits until `table`'s stable files (in the SQLite catalog of `data`) hold `acknowledged` rows, each
    with a stable index if `indexed`, and the set of them has not changed for `quiet` seconds — longer
    than the janitor's pass (60 s), so that compaction, and the indexing of what it made, have nothing
    left to do before anything is timed. Returns (paths of the files, their bytes, their indexes'
    bytes). An engine reading the store directly must read these files, not a glob: files compaction
    replaced stay on disk for a grace period, and a glob would count their rows twice."""
    import sqlite3

    catalog = sqlite3.connect(os.path.join(data, "catalog.db"))
    since, last = time.monotonic(), None
    while True:
        rows = catalog.execute(
            "SELECT f.root, f.path, f.row_count, f.byte_size, i.byte_size FROM files f "
            "LEFT JOIN indexes i ON i.file_id = f.file_id AND i.state = 'stable' "
            "WHERE f.state = 'stable' AND f.table_name = ? ORDER BY f.path",
            (table,),
        ).fetchall()
        complete = sum(r[2] for r in rows) >= acknowledged and (not indexed or all(r[4] is not None for r in rows))
        if rows != last:
            since, last = time.monotonic(), rows
        elif complete and time.monotonic() - since >= quiet:
            break
        time.sleep(1)
    paths = [os.path.join(root.removeprefix("file://"), path) for root, path, _, _, _ in rows]
    return paths, sum(r[3] for r in rows), sum(r[4] or 0 for r in rows)


def wait_api(api, seconds=30):
    """Waits until OpenWit's query API on `api` answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            openwit_sql(api, "SELECT 1")
            return
        except (urllib.error.URLError, ConnectionError, SystemExit):
            if time.monotonic() > deadline:
                raise SystemExit(f"OpenWit's query API on port {api} did not answer within {seconds} s")
            time.sleep(0.1)


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    """A loopback port free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
