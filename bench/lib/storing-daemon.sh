# Sourced by bench/run-ab and bench/profile: one OpenWit daemon storing what it receives (OTLP gRPC →
# batch → parquet, WAL fsyncing, no full-text index, files rotated every second), started from a cold
# page cache so that its mapped code counts the same in every start.
#   start_daemon DIR   starts DIR/openwit; sets `pid` and `work` (its scratch directory)
#   load ITEMS         sends ITEMS items of $SIGNAL with DIR/openwit-loadgen, as fast as acknowledged
#   stop_daemon        stops it and removes its scratch directory
PORT=${PORT:-14317}

start_daemon() {
  dir=$1
  work=$(mktemp -d)
  cat > "$work/openwit.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$PORT}
processors:
  batch:
exporters:
  parquet:
    rotation: {max_age: 1s}
    index: {enabled: false}
extensions:
  wal: {fsync: true}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [parquet]}
    metrics: {receivers: [otlp], processors: [batch], exporters: [parquet]}
    logs: {receivers: [otlp], processors: [batch], exporters: [parquet]}
  telemetry:
    logs: {level: warn}
YAML
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); from common import evict_from_page_cache as e; e(sys.argv[2])' \
    "$(dirname "${BASH_SOURCE[0]}")/.." "$dir/openwit"
  "$dir/openwit" --config "$work/openwit.yaml" --data-dir "$work/data" >/dev/null 2>"$work/openwit.log" &
  pid=$!
  for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
}

load() { "$dir/openwit-loadgen" run --endpoint "127.0.0.1:$PORT" --signal "$SIGNAL" --total-items "$1"; }

stop_daemon() {
  kill "$pid"
  wait "$pid" || true
  rm -rf "$work"
}
