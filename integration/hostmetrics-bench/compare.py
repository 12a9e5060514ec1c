#!/usr/bin/env python3
# oxcol's hostmetrics output against the Collector's (hostmetricsreceiver v0.160.0, built
# from otelcol-hostmetrics.yaml next to this file), on this machine, at the same time: one
# Collector scrapes with all scrapers into a file (file/collector) and receives oxcol's
# OTLP into another (file/oxcol); oxcol runs the same receiver config. Prints, per scraper
# scope, the metrics only one side emits and every difference in unit, description, type,
# monotonicity, temporality, value type, attribute keys and attribute values, then the
# process scraper's resource attributes, then the values that differ by more than
# --tolerance between the two sides' scrapes nearest in time. Exit 1 when a shape differs.
#
#   cargo build -p oxcol     (or --release; OXCOL picks the binary)
#   python3 integration/hostmetrics-bench/compare.py [--all-metrics] [--seconds 6]
#
# --all-metrics also enables every optional metric oxcol emits. Paths: OXCOL
# (target/debug/oxcol), OTELCOL (/tmp/hostmetrics-bench/out/otelcol-hostmetrics),
# BENCH_DIR (/tmp/hostmetrics-bench/compare).
import argparse, json, os, shutil, signal, socket, subprocess, sys, time
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument('--all-metrics', action='store_true')
ap.add_argument('--seconds', type=float, default=6)
ap.add_argument('--tolerance', type=float, default=0.05)
args = ap.parse_args()
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
run = os.environ.get('BENCH_DIR', '/tmp/hostmetrics-bench/compare')
oxcol = os.environ.get('OXCOL', os.path.join(root, 'target/debug/oxcol'))
otelcol = os.environ.get('OTELCOL', '/tmp/hostmetrics-bench/out/otelcol-hostmetrics')
shutil.rmtree(run, ignore_errors=True)
os.makedirs(run)

OPTIONAL = {
    'cpu': ['system.cpu.utilization', 'system.cpu.frequency'],
    'memory': ['system.memory.utilization', 'system.memory.limit', 'system.linux.memory.available',
               'system.linux.memory.dirty', 'system.memory.page_size'],
    'network': ['system.network.conntrack.count', 'system.network.conntrack.max'],
    'filesystem': ['system.filesystem.utilization'],
    'paging': ['system.paging.utilization'],
    'process': ['process.memory.utilization', 'process.disk.operations', 'process.threads',
                'process.paging.faults', 'process.context_switches',
                'process.open_file_descriptors', 'process.uptime'],
}
SCRAPERS = ['cpu', 'load', 'memory', 'network', 'disk', 'filesystem', 'paging', 'processes',
            'system', 'process']


def receiver_yaml():
    lines = ['  host_metrics:', '    collection_interval: 1s', '    initial_delay: 0s', '    scrapers:']
    for s in SCRAPERS:
        if args.all_metrics and s in OPTIONAL:
            lines.append(f'      {s}:')
            lines.append('        metrics:')
            for m in OPTIONAL[s]:
                lines.append(f'          {m}: {{enabled: true}}')
        else:
            lines.append(f'      {s}:')
    return '\n'.join(lines) + '\n'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


grpc = free_port()
col_file, ox_file = os.path.join(run, 'collector.json'), os.path.join(run, 'oxcol.json')
col_cfg = f'''receivers:
{receiver_yaml()}  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file/collector:
    path: {col_file}
  file/oxcol:
    path: {ox_file}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics/collector:
      receivers: [host_metrics]
      exporters: [file/collector]
    metrics/oxcol:
      receivers: [otlp]
      exporters: [file/oxcol]
'''
ox_cfg = f'''receivers:
{receiver_yaml()}exporters:
  otlp:
    endpoint: 127.0.0.1:{grpc}
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{free_port()}
  pipelines:
    metrics:
      receivers: [host_metrics]
      exporters: [otlp]
'''
open(os.path.join(run, 'otelcol.yaml'), 'w').write(col_cfg)
open(os.path.join(run, 'oxcol.yaml'), 'w').write(ox_cfg)
procs = []
try:
    procs.append(subprocess.Popen([otelcol, '--config', os.path.join(run, 'otelcol.yaml')],
                                  stdout=open(os.path.join(run, 'otelcol.log'), 'w'), stderr=subprocess.STDOUT))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(('127.0.0.1', grpc), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    procs.append(subprocess.Popen([oxcol, '--config', os.path.join(run, 'oxcol.yaml')],
                                  stdout=open(os.path.join(run, 'oxcol.log'), 'w'), stderr=subprocess.STDOUT))
    time.sleep(args.seconds)
finally:
    for p in procs[::-1]:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def value(attr):
    v = attr['value']
    if 'stringValue' in v:
        return v['stringValue']
    if 'intValue' in v:
        return int(v['intValue'])
    if 'doubleValue' in v:
        return float(v['doubleValue'])
    if 'boolValue' in v:
        return v['boolValue']
    return json.dumps(v)


def load(path):
    """scope -> metric -> shape, and the points of each scrape."""
    shapes = defaultdict(dict)
    scrapes = defaultdict(list)  # (scope, metric, attrs, resource key) -> [(time, value)]
    resources = {}  # pid -> resource attributes
    for line in open(path):
        req = json.loads(line)
        for rm in req.get('resourceMetrics', []):
            rattrs = {a['key']: value(a) for a in rm.get('resource', {}).get('attributes', [])}
            pid = rattrs.get('process.pid')
            if pid is not None:
                resources[pid] = rattrs
            for sm in rm.get('scopeMetrics', []):
                scope = sm['scope']['name'].rsplit('/', 1)[-1]
                for m in sm.get('metrics', []):
                    kind = 'gauge' if 'gauge' in m else 'sum' if 'sum' in m else '?'
                    body = m.get(kind, {})
                    shape = shapes[scope].setdefault(m['name'], {
                        'unit': m.get('unit', ''), 'description': m.get('description', ''),
                        'type': kind, 'monotonic': body.get('isMonotonic', False),
                        'temporality': body.get('aggregationTemporality', ''),
                        'value_types': set(), 'attributes': defaultdict(set), 'start_zero': set(),
                    })
                    for dp in body.get('dataPoints', []):
                        shape['value_types'].add('int' if 'asInt' in dp else 'double')
                        shape['start_zero'].add(dp.get('startTimeUnixNano', '0') in ('0', 0))
                        attrs = {a['key']: value(a) for a in dp.get('attributes', [])}
                        for k, v in attrs.items():
                            if scope != 'processscraper':
                                shape['attributes'][k].add(v)
                            else:
                                shape['attributes'][k].add('*')
                        v = int(dp['asInt']) if 'asInt' in dp else float(dp.get('asDouble', 0))
                        key = (scope, m['name'], tuple(sorted(attrs.items())), pid)
                        scrapes[key].append((int(dp['timeUnixNano']), v))
    return shapes, scrapes, resources


col, col_points, col_res = load(col_file)
ox, ox_points, ox_res = load(ox_file)
shape_diffs = 0
for scope in sorted(set(col) | set(ox)):
    print(f'== {scope}')
    c, o = col.get(scope, {}), ox.get(scope, {})
    for name in sorted(set(c) | set(o)):
        if name not in o:
            print(f'  only Collector: {name}')
            shape_diffs += 1
            continue
        if name not in c:
            print(f'  only oxcol: {name}')
            shape_diffs += 1
            continue
        for field in ['unit', 'description', 'type', 'monotonic', 'temporality', 'value_types', 'start_zero']:
            if c[name][field] != o[name][field]:
                print(f'  {name}: {field}: Collector {c[name][field]!r} oxcol {o[name][field]!r}')
                shape_diffs += 1
        ca, oa = c[name]['attributes'], o[name]['attributes']
        if set(ca) != set(oa):
            print(f'  {name}: attribute keys: Collector {sorted(ca)} oxcol {sorted(oa)}')
            shape_diffs += 1
        for k in sorted(set(ca) & set(oa)):
            if ca[k] != oa[k]:
                print(f'  {name}: {k}: only Collector {sorted(map(str, ca[k] - oa[k]))[:20]} '
                      f'only oxcol {sorted(map(str, oa[k] - ca[k]))[:20]}')
                shape_diffs += 1

print('== process resources')
print(f'  processes: Collector {len(col_res)} oxcol {len(ox_res)}')
keys_c = set(k for r in col_res.values() for k in r)
keys_o = set(k for r in ox_res.values() for k in r)
if keys_c != keys_o:
    print(f'  resource attribute keys: Collector {sorted(keys_c)} oxcol {sorted(keys_o)}')
    shape_diffs += 1
attr_diffs = defaultdict(list)
for pid in sorted(set(col_res) & set(ox_res)):
    for k in sorted(set(col_res[pid]) | set(ox_res[pid])):
        if col_res[pid].get(k) != ox_res[pid].get(k):
            attr_diffs[k].append((pid, col_res[pid].get(k), ox_res[pid].get(k)))
# Values of the same pid may differ by timing (an exec, a kworker renamed between the two
# scrapes): printed, not counted.
for k, diffs in attr_diffs.items():
    print(f'  {k}: {len(diffs)} processes differ, e.g. {diffs[:3]}')
only_c = sorted(set(col_res) - set(ox_res))
only_o = sorted(set(ox_res) - set(col_res))
if only_c or only_o:
    print(f'  pids only Collector {[(p, col_res[p].get("process.executable.name")) for p in only_c][:10]} '
          f'only oxcol {[(p, ox_res[p].get("process.executable.name")) for p in only_o][:10]}')

print(f'== values differing by more than {args.tolerance:.0%} (nearest scrapes)')
shown = 0
for key, cps in sorted(col_points.items(), key=lambda kv: str(kv[0])):
    ops = ox_points.get(key)
    if not ops or key[0] == 'processscraper' and key[3] in (None,):
        continue
    best = min(((abs(ct - ot), cv, ov) for ct, cv in cps for ot, ov in ops), key=lambda x: x[0])
    _, cv, ov = best
    if cv == ov or max(abs(cv), abs(ov)) == 0:
        continue
    if abs(cv - ov) / max(abs(cv), abs(ov)) > args.tolerance:
        if key[0] == 'processscraper' and shown > 40:
            continue
        print(f'  {key[0]} {key[1]} {dict(key[2])} pid={key[3]}: Collector {cv} oxcol {ov}')
        shown += 1
sys.exit(1 if shape_diffs else 0)
