#!/usr/bin/env bash
# Load run for docs/benchmarks.md: oxcol (release) scraping 100 targets every 15 s, all
# served by one Go process (goapp -paths 100 serves /p/<i>/... for i < 100).
#   integration/go/bench.sh pprof|prometheus [seconds]
# Prints oxcol's CPU seconds, CPU % over the run, and RSS; and the Go process' CPU.
set -euo pipefail
cd "$(dirname "$0")"
kind=${1:-pprof}; seconds=${2:-90}
root=$(cd ../.. && pwd)
go build -o "$root/target/go/goapp" ./goapp
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$kind" = pprof ]; then mode=(-mode stable -stable 1000); else mode=(-mode metrics); fi
"$root/target/go/goapp" "${mode[@]}" -addr 127.0.0.1:$port -paths 100 >/dev/null &
goapp=$!
config=$(mktemp --suffix .yaml)
trap 'kill $goapp ${oxcol:-} 2>/dev/null || true; rm -f $config' EXIT
sleep 1
[ "$kind" = metrics ] || true
for i in $(seq 1 50); do curl -s 127.0.0.1:$port/work >/dev/null || true; done
{
  echo "receivers:"
  if [ "$kind" = pprof ]; then
    echo "  pprof:"
    echo "    collection_interval: 15s"
    echo "    profiles: [goroutine, heap]"
    echo "    targets:"
    for i in $(seq 0 99); do echo "      - {endpoint: \"http://127.0.0.1:$port/p/$i\", labels: {service.name: svc$i}}"; done
  else
    echo "  prometheus:"
    echo "    config:"
    echo "      scrape_configs:"
    for i in $(seq 0 99); do
      echo "        - {job_name: svc$i, scrape_interval: 15s, metrics_path: /p/$i/metrics, static_configs: [{targets: [\"127.0.0.1:$port\"]}]}"
    done
  fi
  echo "exporters:"
  echo "  debug: {verbosity: basic}"
  echo "service:"
  echo "  telemetry: {metrics: {level: none}}"
  echo "  pipelines:"
  echo "    metrics: {receivers: [$kind], exporters: [debug]}"
} > "$config"
"$root/target/release/oxcol" --config "$config" 2>/dev/null >/dev/null &
oxcol=$!
sleep "$seconds"
ticks=$(getconf CLK_TCK)
read -r ou os < <(awk '{print $14, $15}' /proc/$oxcol/stat)
read -r gu gs < <(awk '{print $14, $15}' /proc/$goapp/stat)
rss=$(awk '/VmRSS/{print $2}' /proc/$oxcol/status)
hwm=$(awk '/VmHWM/{print $2}' /proc/$oxcol/status)
python3 - "$kind" "$seconds" "$ticks" "$ou" "$os" "$gu" "$gs" "$rss" "$hwm" <<'PY'
import sys
kind, secs, ticks, ou, os_, gu, gs, rss, hwm = sys.argv[1], *map(float, sys.argv[2:])
cpu = (ou + os_) / ticks; gcpu = (gu + gs) / ticks
scrapes = int(secs // 15) + 1
print(f"{kind}: 100 targets @15s for {secs:.0f}s ({scrapes} rounds): oxcol CPU {cpu:.2f}s = {100*cpu/secs:.2f}% of a core, "
      f"{1000*cpu/scrapes/100:.2f} ms per target-scrape; RSS {rss/1024:.1f} MiB (peak {hwm/1024:.1f}); Go target CPU {gcpu:.2f}s")
PY
