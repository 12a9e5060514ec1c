#!/usr/bin/env python3
# filelog throughput: oxcol (release) vs the Collector's filelog receiver (v0.160.0, built
# from otelcol-filelog.yaml next to this file), same file, same pipeline (filelog -> batch
# -> otlp exporter -> oxcol-bench sink), one run each, one after the other. Reports lines
# per CPU second of each process (utime + stime when the sink has every line) and peak RSS.
#
#   cargo build --release -p oxcol -p oxcol-integration
#   python3 integration/filelog-bench/bench.py [LINES]      (default 1,000,000; ~93 MiB)
#
# Paths: OXCOL (target/release/oxcol), OXCOL_BENCH (target/release/oxcol-bench),
# OTELCOL (/tmp/filelog-bench/out/otelcol-filelog), BENCH_DIR (/tmp/filelog-bench/run).
import json, os, subprocess, sys, time, urllib.request, socket, shutil
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
run = os.environ.get('BENCH_DIR', '/tmp/filelog-bench/run')
oxcol = os.environ.get('OXCOL', os.path.join(root, 'target/release/oxcol'))
oxcol_bench = os.environ.get('OXCOL_BENCH', os.path.join(root, 'target/release/oxcol-bench'))
otelcol = os.environ.get('OTELCOL', '/tmp/filelog-bench/out/otelcol-filelog')
shutil.rmtree(run, ignore_errors=True); os.makedirs(run)
log = os.path.join(run, 'app.log')
with open(log, 'w') as f:
    for i in range(N):
        f.write(f'2024-03-05T13:04:05.{i%1000:03d}Z INFO request handled path=/api/v1/items/{i} status=200 duration_ms={i%97}\n')
size = os.path.getsize(log)
def free_port():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p
def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        parts = f.read().rsplit(')', 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf('SC_CLK_TCK')
def rss(pid):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) // 1024
results = {}
for name, binary, exporter in [
    ('oxcol', oxcol, 'otlp'),
    ('otelcol', otelcol, 'otlp'),
]:
    sink = subprocess.Popen([oxcol_bench, 'sink'], stdout=subprocess.PIPE, text=True)
    addrs = json.loads(sink.stdout.readline())
    metrics_port = free_port()
    telemetry = (f'  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics_port}\n' if name == 'oxcol' else
                 f'  telemetry:\n    metrics:\n      level: none\n')
    cfg = f'''receivers:
  filelog:
    include: [{log}]
    start_at: beginning
processors:
  batch: {{}}
exporters:
  {exporter}:
    endpoint: {addrs['grpc']}
    tls:
      insecure: true
service:
{telemetry}  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [{exporter}]
'''
    cfgpath = os.path.join(run, f'{name}.yaml'); open(cfgpath, 'w').write(cfg)
    start = time.time()
    proc = subprocess.Popen([binary, '--config', cfgpath], stdout=open(os.path.join(run, f'{name}.log'), 'w'), stderr=subprocess.STDOUT)
    items = 0
    try:
        while time.time() - start < 300:
            try:
                stats = json.load(urllib.request.urlopen(f"http://{addrs['control']}/stats", timeout=5))
                items = stats['logs']['items']
            except Exception:
                pass
            if items >= N:
                break
            time.sleep(0.05)
        wall = time.time() - start
        cpu = cpu_seconds(proc.pid)
        peak = rss(proc.pid)
    finally:
        proc.kill(); proc.wait(); sink.kill(); sink.wait()
    results[name] = dict(items=items, wall_s=round(wall, 2), cpu_s=round(cpu, 2), lines_per_cpu_s=round(items / cpu) if cpu else None, peak_rss_mib=peak)
    print(name, results[name], flush=True)
print('file', size >> 20, 'MiB,', N, 'lines')
if results['oxcol']['cpu_s'] and results['otelcol']['cpu_s']:
    print('oxcol lines/CPU-s over the Collector\'s:', round(results['oxcol']['lines_per_cpu_s'] / results['otelcol']['lines_per_cpu_s'], 2))
