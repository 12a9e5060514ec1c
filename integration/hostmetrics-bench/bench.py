#!/usr/bin/env python3
# hostmetrics CPU per scrape: oxcol (release) vs the Collector's hostmetrics receiver
# (v0.160.0, built from otelcol-hostmetrics.yaml next to this file), same config (all ten
# scrapers with their default metrics, process errors muted, collection_interval 1s, debug
# exporter at basic verbosity), with N idle `sleep` children started first so that the process scraper sees
# them. Rounds alternate oxcol / Collector. Each round runs one binary for WARMUP + SECONDS
# and reads utime + stime of /proc/<pid>/stat at the end of the warm-up and at the end:
# CPU per scrape = that CPU / SECONDS (one scrape a second). An idle round of each (the
# same config with collection_interval 1h: the receiver never scrapes in the window) is
# the baseline subtracted for the "net" column. Peak RSS is VmHWM at the end.
#
#   cargo build --release -p oxcol
#   python3 integration/hostmetrics-bench/bench.py [--processes 300] [--seconds 20] [--rounds 3]
#
# Paths: OXCOL (target/release/oxcol), OTELCOL (/tmp/hostmetrics-bench/out/otelcol-hostmetrics),
# BENCH_DIR (/tmp/hostmetrics-bench/run).
import argparse, os, shutil, signal, socket, subprocess, time

ap = argparse.ArgumentParser()
ap.add_argument('--processes', type=int, default=300)
ap.add_argument('--seconds', type=float, default=20)
ap.add_argument('--warmup', type=float, default=4)
ap.add_argument('--rounds', type=int, default=3)
args = ap.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
run = os.environ.get('BENCH_DIR', '/tmp/hostmetrics-bench/run')
oxcol = os.environ.get('OXCOL', os.path.join(root, 'target/release/oxcol'))
otelcol = os.environ.get('OTELCOL', '/tmp/hostmetrics-bench/out/otelcol-hostmetrics')
shutil.rmtree(run, ignore_errors=True)
os.makedirs(run)
HZ = os.sysconf('SC_CLK_TCK')


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        parts = f.read().rsplit(')', 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / HZ


def peak_rss_mib(pid):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024


def config(name, interval):
    scrapers = ''.join(f'      {s}:\n' for s in ['cpu', 'load', 'memory', 'network', 'disk', 'filesystem',
                                                 'paging', 'processes', 'system'])
    # Muted: both would log every scrape the kernel threads' missing `exe` (a long line in
    # the Collector), which is not the scrape's cost.
    scrapers += '      process:\n        mute_process_all_errors: true\n'
    telemetry = (f'  telemetry:\n    metrics:\n      address: 127.0.0.1:{free_port()}\n' if name == 'oxcol' else
                 '  telemetry:\n    metrics:\n      level: none\n')
    return f'''receivers:
  host_metrics:
    collection_interval: {interval}
    scrapers:
{scrapers}exporters:
  debug:
    verbosity: basic
service:
{telemetry}  pipelines:
    metrics:
      receivers: [host_metrics]
      exporters: [debug]
'''


def one_round(name, binary, interval):
    path = os.path.join(run, f'{name}-{interval}.yaml')
    open(path, 'w').write(config(name, interval))
    proc = subprocess.Popen([binary, '--config', path], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(run, f'{name}.log'), 'a'))
    try:
        time.sleep(args.warmup)
        before = cpu_seconds(proc.pid)
        time.sleep(args.seconds)
        cpu = cpu_seconds(proc.pid) - before
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return cpu, rss


sleepers = [subprocess.Popen(['sleep', '3600']) for _ in range(args.processes)]
try:
    pids = sum(1 for d in os.listdir('/proc') if d.isdigit())
    print(f'processes on the machine: {pids}; load average {os.getloadavg()}')
    results = {'oxcol': [], 'otelcol': []}
    idle = {'oxcol': [], 'otelcol': []}
    for r in range(args.rounds):
        for name, binary in [('oxcol', oxcol), ('otelcol', otelcol)]:
            cpu, rss = one_round(name, binary, '1s')
            results[name].append((cpu, rss))
            print(f'round {r + 1} {name:8} busy: {cpu:.2f} s CPU in {args.seconds:.0f} s = '
                  f'{1000 * cpu / args.seconds:.1f} ms/scrape, peak RSS {rss:.1f} MiB', flush=True)
    for name, binary in [('oxcol', oxcol), ('otelcol', otelcol)]:
        cpu, rss = one_round(name, binary, '1h')
        idle[name].append(cpu)
        print(f'idle    {name:8}: {cpu:.2f} s CPU in {args.seconds:.0f} s, peak RSS {rss:.1f} MiB', flush=True)
    print(f'load average after: {os.getloadavg()}')
    summary = {}
    for name in results:
        cpus = sorted(c for c, _ in results[name])
        median = cpus[len(cpus) // 2]
        per_scrape = 1000 * median / args.seconds
        net = 1000 * (median - idle[name][0]) / args.seconds
        rss = max(r for _, r in results[name])
        summary[name] = (per_scrape, net, rss)
        print(f'{name:8} median {per_scrape:.1f} ms CPU/scrape (net of idle {net:.1f}), peak RSS {rss:.1f} MiB')
    print(f'oxcol/Collector CPU per scrape: {summary["oxcol"][0] / summary["otelcol"][0]:.3f} '
          f'(net of idle: {summary["oxcol"][1] / summary["otelcol"][1]:.3f}); '
          f'peak RSS: {summary["oxcol"][2] / summary["otelcol"][2]:.3f}')
finally:
    for s in sleepers:
        s.kill()
    for s in sleepers:
        s.wait()
