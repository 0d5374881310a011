#!/usr/bin/env python3
"""Steady load, storing: OpenWit receives a fixed rate of items (the load generator's `--rate`) over OTLP
gRPC for a fixed time and stores them as Parquet (the `batch` processor, the `parquet` exporter, the
WAL fsyncing every acknowledgement). Every few seconds the daemon's resident memory (`VmRSS`, and its
parts: `RssAnon`, the heap, and `RssFile`, the binary's code the kernel mapped), its CPU time and what
its memory budget has charged (`openwit_memory_charged_bytes`) are sampled.

Reported: the samples (CSV), and a summary: CPU used (share of one core), RSS at the start of the
second minute and at the end, its peak (sampled, and the kernel's high-water mark `VmHWM`, which catches
what falls between samples) and its least-squares slope over the run after the first minute (MiB per
minute: flat is ≈ 0), per minute the peak RSS and the heap's floor (`RssAnon` at its least, between
row groups) with the floor's slope, items acknowledged and refused. `--parquet 'KEY: VALUE'` adds a line to the
exporter's settings (an A/B of a setting). The binary's pages are dropped from the page cache before
the daemon starts, so that its mapped code (`RssFile`) is that of a cold start, whatever ran or was
copied before. Run through `bench/run-steady`.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

from common import cpu_seconds, evict_from_page_cache, wait_api

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
exporters:
  parquet:{parquet}
extensions:
  query:
    endpoint: 127.0.0.1:{api}
service:
  extensions: [query]
  pipelines:
    {signal}:
      receivers: [otlp]
      processors: [batch]
      exporters: [parquet]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"""

PORTS = {"grpc": 25417, "api": 25483, "metrics": 25488}


def rss_mib(pid, field="VmRSS"):
    """`VmRSS` (resident now), `VmHWM` (the most ever resident, which samples can miss), `RssAnon` (the
    heap: what the daemon allocated) or `RssFile` (its code and mapped files, pages the kernel can drop
    and read again) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        kib = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(kib.group(1)) / 1024


def charged_mib(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        m = re.search(r"^openwit_memory_charged_bytes (\S+)", r.read().decode(), re.M)
    return float(m.group(1)) / 2**20 if m else float("nan")


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--openwit", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--rate", type=float, default=10_000)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--signal", default="traces", choices=["traces", "logs", "metrics"])
    # Every second: the exporter's buffered rows rise and fall in a few seconds (a row group fills and is
    # written), and samples every 5 s caught that sawtooth at a phase drifting slowly with the load, which
    # read as RSS steps minutes apart that were not there.
    p.add_argument("--every", type=float, default=1, help="seconds between samples")
    p.add_argument("--scratch", default="bench/results/steady")
    p.add_argument("--json", default="bench/results/steady.json")
    p.add_argument("--parquet", action="append", default=[], metavar="KEY: VALUE",
                   help="a line of the parquet exporter's settings (repeatable), e.g. 'row_group_size: 32768'")
    a = p.parse_args()

    shutil.rmtree(a.scratch, ignore_errors=True)
    os.makedirs(a.scratch)
    cfg = os.path.join(a.scratch, "config.yaml")
    with open(cfg, "w") as f:
        parquet = "".join("\n    " + line for line in a.parquet)
        f.write(CONFIG.format(signal=a.signal, parquet=parquet, **PORTS))
    log = open(os.path.join(a.scratch, "openwit.log"), "w")
    evict_from_page_cache(a.openwit)
    daemon = subprocess.Popen(
        [a.openwit, "--config", cfg, "--data-dir", os.path.join(a.scratch, "data")], stdout=log, stderr=log
    )
    try:
        wait_api(PORTS["api"])
        load = subprocess.Popen(
            [a.loadgen, "run", "--endpoint", f"127.0.0.1:{PORTS['grpc']}", "--signal", a.signal,
             "--rate", str(a.rate), "--duration", f"{int(a.minutes * 60)}s", "--items-per-request", "500",
             "--concurrency", "8", "--distinct-requests", "256"],
            stdout=subprocess.PIPE,
            text=True,
        )
        start, cpu0 = time.monotonic(), cpu_seconds(daemon.pid)
        samples = []
        with open(os.path.join(a.scratch, "samples.csv"), "w") as csv:
            csv.write("seconds,rss_mib,cpu_share,charged_mib,rss_anon_mib,rss_file_mib\n")
            last_t, last_cpu = start, cpu0
            while load.poll() is None:
                time.sleep(a.every)
                now, cpu = time.monotonic(), cpu_seconds(daemon.pid)
                s = (now - start, rss_mib(daemon.pid), (cpu - last_cpu) / (now - last_t), charged_mib(PORTS["metrics"]),
                     rss_mib(daemon.pid, "RssAnon"), rss_mib(daemon.pid, "RssFile"))
                last_t, last_cpu = now, cpu
                samples.append(s)
                csv.write("%.1f,%.1f,%.3f,%.1f,%.1f,%.1f\n" % s)
                csv.flush()
                print("%6.0f s  RSS %6.1f MiB (anon %6.1f, file %5.1f)  CPU %5.1f %%  charged %6.1f MiB"
                      % (s[0], s[1], s[4], s[5], s[2] * 100, s[3]), file=sys.stderr, flush=True)
        out = load.stdout.read()
        print(out, end="", file=sys.stderr)
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(daemon.pid) - cpu0
        hwm = rss_mib(daemon.pid, "VmHWM")
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)

    acknowledged = re.search(r"acknowledged (\d+)", out)
    settled = [(t / 60, s[1]) for s in samples if (t := s[0]) >= 60]
    # Per minute: the most resident, and the heap's floor (its least between row groups), whose trend
    # tells growth from the sawtooth of buffered rows.
    minutes = {}
    for s in samples:
        minutes.setdefault(int(s[0] // 60), []).append(s)
    by_minute = [minutes[m] for m in sorted(minutes)]
    floors = [(m + 1, min(s[4] for s in ss)) for m, ss in enumerate(by_minute)]
    summary = {
        "signal": a.signal,
        "rate": a.rate,
        "minutes": a.minutes,
        "acknowledged": int(acknowledged.group(1)) if acknowledged else None,
        "cpu_share": cpu / elapsed,
        "cpu_seconds_per_million": cpu / (int(acknowledged.group(1)) / 1e6) if acknowledged else None,
        "rss_mib_after_1_min": settled[0][1] if settled else None,
        "rss_mib_at_end": samples[-1][1] if samples else None,
        "rss_mib_peak": max(s[1] for s in samples) if samples else None,
        "rss_mib_high_water_mark": hwm,
        "rss_anon_mib_peak": max(s[4] for s in samples) if samples else None,
        "rss_file_mib_peak": max(s[5] for s in samples) if samples else None,
        "rss_slope_mib_per_min": slope(settled) if len(settled) > 1 else None,
        "rss_mib_peak_by_minute": [round(max(s[1] for s in ss), 1) for ss in by_minute],
        "rss_anon_floor_mib_by_minute": [round(f, 1) for _, f in floors],
        "rss_anon_floor_slope_mib_per_min": slope(floors[1:]) if len(floors) > 2 else None,
        "charged_mib_peak": max(s[3] for s in samples) if samples else None,
        "load_generator": out.strip().splitlines(),
    }
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps({k: v for k, v in summary.items() if k != "load_generator"}, indent=2))


if __name__ == "__main__":
    main()
