#!/usr/bin/env python3
"""Summarises `perf script` output of the daemon (bench/profile): each stage's share of the samples
(inclusive: a sample counts for every frame on its stack), or with --under FRAME what that frame's
samples are spent in (its callees, DEPTH frames down), or with --callers FRAME who calls it (the
nearest DEPTH frames of OpenWit and its libraries above it)."""
import argparse
import collections
import re

# The daemon's stages and what is spread across them, by a pattern of the frame that marks each.
STAGES = [
    ("Parquet writer", "parquet::writer::Writer::try_write"),
    ("  row group written", "writer::Active::write_row_group"),
    ("  its order sorted", "sort_key::sorted_order"),
    ("  columns OpenWit encodes", "dictionary_chunk::encode"),
    ("  the crate's column writers", "ArrowColumnWriter::write"),
    ("  rows gathered (interleave)", "arrow_select::interleave::interleave"),
    ("  zstd", "ZSTD_compress"),
    ("conversion to rows (from the bytes)", "_wire::rows"),
    ("receiver (gRPC, skim)", "openwit_receivers::otlp::grpc::OtlpService"),
    ("  skim", "openwit_core::columnar::skim"),
    ("WAL", "openwit_wal::writer::Wal"),
    ("memcpy", "__memcpy"),
    ("page faults", "asm_exc_page_fault"),
    ("vectors growing", "finish_grow"),
    ("allocator", r"^_?mi_"),
]
LIBRARIES = re.compile(r"openwit|parquet|arrow|tonic|prost|zstd|bytes|hyper|h2::|tantivy")


def samples(path):
    """Each sample's stack, leaf first, frames without offsets or hashes."""
    stack = []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if stack:
                    yield stack
                stack = []
            elif line[0] in " \t":
                parts = line.strip().split(" ", 1)
                if len(parts) == 2:
                    name = re.sub(r"\+0x[0-9a-f]+$", "", parts[1].rsplit(" (", 1)[0])
                    stack.append(re.sub(r"::h[0-9a-f]{16}$", "", name))
    if stack:
        yield stack


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("perf_script")
    p.add_argument("--under", metavar="FRAME")
    p.add_argument("--callers", metavar="FRAME")
    p.add_argument("--depth", type=int, default=2)
    a = p.parse_args()
    total = 0
    counts = collections.Counter()
    for stack in samples(a.perf_script):
        total += 1
        if a.under or a.callers:
            anchor = a.under or a.callers
            at = next((i for i, n in enumerate(stack) if anchor in n), None)
            if at is None:
                continue
            counts["(all)"] += 1
            if a.under:
                path = " <- ".join(reversed(stack[max(0, at - a.depth):at])) or "(self)"
            else:
                path = " <- ".join([n[:90] for n in stack[at + 1:] if LIBRARIES.search(n)][:a.depth])
            counts[path] += 1
        else:
            for label, marker in STAGES:
                if any(re.search(marker, n) for n in stack):
                    counts[label] += 1
    if not total:
        raise SystemExit(f"{a.perf_script}: no samples")
    print(f"{total} samples")
    if a.under or a.callers:
        print(f"{100 * counts.pop('(all)', 0) / total:5.1f}%  {a.under or a.callers}")
        for path, n in counts.most_common(25):
            print(f"{100 * n / total:5.1f}%    {path}")
    else:
        for label, _ in STAGES:
            print(f"{100 * counts[label] / total:5.1f}%  {label}")


if __name__ == "__main__":
    main()
