#!/usr/bin/env python3
# kafka exporter and receiver: oxcol (release) vs the Collector's kafkaexporter and
# kafkareceiver (contrib v0.162.0, built from otelcol-kafka.yaml next to this file), one
# run, rounds alternating oxcol / Collector on one real Kafka 4.1.1 broker (KRaft, on
# 127.0.0.1, from the jars `scripts/build-peer kafka` caches). Both run the same config
# files (exporter.yaml, receiver.yaml next to this file).
#
#   exporter side: `oxcol-bench load` -> OTLP/gRPC -> agent -> kafka exporter -> a new
#     topic per round; done when the agent's otelcol_exporter_sent_metric_points reaches
#     the total. CPU = utime + stime of the agent from ready (OTLP port and /metrics
#     answer) to done; peak RSS = VmHWM.
#   receiver side: one topic pre-filled once (by an oxcol kafka exporter, one message per
#     load request) -> agent's kafka receiver (a new consumer group per round, earliest)
#     -> otlp exporter -> `oxcol-bench sink`; done when the sink has every point. CPU =
#     utime + stime of the agent from its start (start-up included) to done.
#
#   cargo build --release -p oxcol && cargo build --release -p oxcol-integration --bin oxcol-bench
#   python3 integration/kafka-bench/bench.py [--points 1000000] [--rate 50000] [--rounds 2] [--flat-out]
#
# Paths: OXCOL (target/release/oxcol), OXCOL_BENCH (target/release/oxcol-bench), OTELCOL
# (/tmp/kafka-bench/out/otelcol-kafka), KAFKA_LIBS (~/.cache/oxcol-peers/kafka-4.1.1/libs),
# BENCH_DIR (/tmp/kafka-bench/run, removed and made anew). Prints one JSON line per round
# and a summary table (medians over the rounds); every process it starts is killed at the
# end, also on failure.
import argparse, base64, json, os, shutil, socket, statistics, subprocess, sys, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument('--points', type=int, default=1_000_000, help='points per round')
ap.add_argument('--rate', type=float, default=50_000, help='points/s of the paced exporter rounds')
ap.add_argument('--rounds', type=int, default=2, help='rounds per system and side')
ap.add_argument('--flat-out', action='store_true', help='also exporter rounds at full speed')
ap.add_argument('--partitions', type=int, default=4)
args = ap.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, '..', '..')
run = os.environ.get('BENCH_DIR', '/tmp/kafka-bench/run')
oxcol = os.environ.get('OXCOL', os.path.join(root, 'target/release/oxcol'))
oxcol_bench = os.environ.get('OXCOL_BENCH', os.path.join(root, 'target/release/oxcol-bench'))
otelcol = os.environ.get('OTELCOL', '/tmp/kafka-bench/out/otelcol-kafka')
kafka_libs = os.environ.get('KAFKA_LIBS', os.path.expanduser('~/.cache/oxcol-peers/kafka-4.1.1/libs'))
SYSTEMS = [('oxcol', oxcol), ('otelcol', otelcol)]
# 20 resources x 5 metrics x 10 points = 1000 points per request (as the loadbalancing run).
SHAPE = ['--resources', '20', '--metrics', '5', '--points', '10', '--attributes', '3', '--concurrency', '4']
for path in [oxcol, oxcol_bench, otelcol]:
    if not os.access(path, os.X_OK):
        sys.exit(f'bench.py: {path} is missing; see the build commands at the top of this file')
if not os.path.isdir(kafka_libs):
    sys.exit(f'bench.py: {kafka_libs} is missing; run scripts/build-peer kafka')
shutil.rmtree(run, ignore_errors=True)
os.makedirs(run)
started = []  # every process started here, killed at the end


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(argv, log, env=None):
    proc = subprocess.Popen(argv, stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    started.append(proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        parts = f.read().rsplit(')', 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf('SC_CLK_TCK')


def peak_rss_mib(pid):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmHWM:'):
            return round(int(line.split()[1]) / 1024, 1)


def java(cls, *argv, timeout=60):
    out = subprocess.run(['java', '-cp', f'{kafka_libs}/*', cls, *argv], capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f'{cls} {argv} failed: {out.stdout}\n{out.stderr}')
    return out.stdout


def wait_until(what, check, timeout):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise RuntimeError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


# --- the broker, as integration/src/kafka.rs starts it (without its per-message fsync) ---
kafka_dir = os.path.join(run, 'kafka')
os.makedirs(os.path.join(kafka_dir, 'data'))
kafka_port, controller_port = free_port(), free_port()
broker = f'127.0.0.1:{kafka_port}'
properties = os.path.join(kafka_dir, 'server.properties')
open(properties, 'w').write(f'''process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{kafka_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={kafka_dir}/data
num.partitions={args.partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
''')
admin = os.path.join(kafka_dir, 'admin.properties')
open(admin, 'w').write('request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n')


def topics(*argv):
    return java('org.apache.kafka.tools.TopicCommand', '--bootstrap-server', broker,
                '--command-config', admin, *argv)


def create_topic(name):
    topics('--create', '--if-not-exists', '--topic', name, '--partitions', str(args.partitions),
           '--replication-factor', '1')


def messages_in(topic):
    out = java('org.apache.kafka.tools.GetOffsetShell', '--bootstrap-server', broker, '--topic', topic)
    return sum(int(line.rsplit(':', 1)[1]) for line in out.split() if line.count(':') >= 2)


def telemetry_sent(port):
    """otelcol_exporter_sent_metric_points (oxcol) / ..._total (Collector), summed; None if down."""
    try:
        text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=2).read().decode()
    except Exception:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith('otelcol_exporter_sent_metric_points'):
            total += float(line.rsplit(' ', 1)[1])
    return total


def port_open(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        return True
    except OSError:
        return False


def agent(name, binary, config, env_extra, log):
    env = dict(os.environ, **{k: str(v) for k, v in env_extra.items()})
    return spawn([binary, '--config', os.path.join(here, config)], log, env)


def exporter_round(name, binary, topic, rate):
    create_topic(topic)
    otlp_port, telemetry_port = free_port(), free_port()
    log = os.path.join(run, f'{topic}.log')
    proc = agent(name, binary, 'exporter.yaml', dict(
        BENCH_OTLP_PORT=otlp_port, BENCH_BROKER=broker, BENCH_TOPIC=topic,
        BENCH_TELEMETRY_PORT=telemetry_port), log)
    try:
        wait_until(f'{name} to start (log {log})',
                   lambda: proc.poll() is None and port_open(otlp_port)
                   and telemetry_sent(telemetry_port) is not None, 60)
        time.sleep(1)  # let the producer connect before the clock starts
        cpu_ready = cpu_seconds(proc.pid)
        start = time.time()
        load = subprocess.run([oxcol_bench, 'load', '--endpoint', f'127.0.0.1:{otlp_port}', *SHAPE,
                               '--rate', str(rate), '--total-points', str(args.points), '--retry'],
                              capture_output=True, text=True, timeout=600)
        if load.returncode != 0:
            raise RuntimeError(f'oxcol-bench load failed: {load.stderr}')
        wait_until(f'{name} to send {args.points} points (log {log})',
                   lambda: (telemetry_sent(telemetry_port) or 0) >= args.points, 120)
        wall = time.time() - start
        cpu = cpu_seconds(proc.pid) - cpu_ready
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    return dict(side='exporter', system=name, rate=rate, topic=topic, wall_s=round(wall, 2),
                startup_cpu_s=round(cpu_ready, 2), cpu_s=round(cpu, 2),
                cpu_s_per_million=round(cpu / args.points * 1e6, 3), peak_rss_mib=rss,
                messages=messages_in(topic), load=json.loads(load.stdout))


def sink_items(control):
    try:
        stats = json.load(urllib.request.urlopen(f'http://{control}/stats', timeout=2))
        return stats['metrics']['items']
    except Exception:
        return 0


def receiver_round(name, binary, topic, round_index):
    sink_log = os.path.join(run, f'sink-{name}-{round_index}.log')
    sink = spawn([oxcol_bench, 'sink'], sink_log)
    try:
        addrs = wait_until('the sink address', lambda: sink_addresses(sink_log), 30)
        telemetry_port = free_port()
        log = os.path.join(run, f'receiver-{name}-{round_index}.log')
        start = time.time()
        proc = agent(name, binary, 'receiver.yaml', dict(
            BENCH_BROKER=broker, BENCH_TOPIC=topic, BENCH_GROUP=f'bench-{name}-{round_index}',
            BENCH_SINK=addrs['grpc'], BENCH_TELEMETRY_PORT=telemetry_port), log)
        try:
            wait_until(f'{name} to deliver {args.points} points (log {log})',
                       lambda: proc.poll() is None and sink_items(addrs['control']) >= args.points, 300)
            wall = time.time() - start
            cpu = cpu_seconds(proc.pid)
            rss = peak_rss_mib(proc.pid)
            time.sleep(0.5)
            items = sink_items(addrs['control'])
        finally:
            stop(proc)
    finally:
        stop(sink)
    return dict(side='receiver', system=name, round=round_index, wall_s=round(wall, 2),
                cpu_s=round(cpu, 2), cpu_s_per_million=round(cpu / args.points * 1e6, 3),
                peak_rss_mib=rss, points_at_sink=items)


def sink_addresses(log):
    """The addresses `oxcol-bench sink` prints as its first line (JSON), once it has."""
    try:
        line = open(log).readline()
        return json.loads(line) if line.endswith('\n') else None
    except (OSError, ValueError):
        return None


def main():
    results = []
    loads = []
    cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip('=')
    java('kafka.tools.StorageTool', 'format', '-t', cluster_id, '-c', properties)
    kafka = spawn(['java', '-Xms128m', '-Xmx512m', '-XX:+UseSerialGC', '-cp', f'{kafka_libs}/*',
                   'kafka.Kafka', properties], os.path.join(kafka_dir, 'kafka.log'))
    wait_until('the broker', lambda: port_open(kafka_port) and list_ok(), 90)
    print(f'broker {broker} up', flush=True)

    def record(result):
        results.append(result)
        print(json.dumps(result), flush=True)

    rates = [args.rate] + ([0] if args.flat_out else [])
    for rate in rates:
        for r in range(args.rounds):
            for name, binary in SYSTEMS:
                loads.append(os.getloadavg()[0])
                record(exporter_round(name, binary, f'exp-{int(rate)}-{r}-{name}', rate))
    # The receivers' topic: one message per load request, written once by oxcol's exporter.
    prefill = 'recv-source'
    filled = exporter_round('oxcol', oxcol, prefill, 0)
    print(f'pre-filled {prefill}: {filled["messages"]} messages', flush=True)
    for r in range(args.rounds):
        for name, binary in SYSTEMS:
            loads.append(os.getloadavg()[0])
            record(receiver_round(name, binary, prefill, r))
    print(f'load average (1 min) at the round starts: {min(loads):.2f} to {max(loads):.2f}')
    print('| side | load | system | CPU s per million points | peak RSS MiB | wall s |')
    print('|---|---|---|---|---|---|')
    groups = {}
    for res in results:
        key = (res['side'], res.get('rate'), res['system'])
        groups.setdefault(key, []).append(res)
    for (side, rate, system), rows in groups.items():
        load = '' if rate is None else ('flat out' if rate == 0 else f'{int(rate)}/s')
        cpu = statistics.median(r['cpu_s_per_million'] for r in rows)
        rss = statistics.median(r['peak_rss_mib'] for r in rows)
        wall = statistics.median(r['wall_s'] for r in rows)
        print(f'| {side} | {load} | {system} | {cpu:.3f} | {rss:.1f} | {wall:.1f} |')
    for (side, rate, system), rows in groups.items():
        if system != 'oxcol' or (side, rate, 'otelcol') not in groups:
            continue
        ours, theirs = rows, groups[(side, rate, 'otelcol')]
        cpu = (statistics.median(r['cpu_s_per_million'] for r in theirs)
               / statistics.median(r['cpu_s_per_million'] for r in ours))
        rss = (statistics.median(r['peak_rss_mib'] for r in theirs)
               / statistics.median(r['peak_rss_mib'] for r in ours))
        load = '' if rate is None else (' flat out' if rate == 0 else f' {int(rate)}/s')
        print(f'{side}{load}: the Collector uses {cpu:.2f}x the CPU and {rss:.2f}x the peak RSS of oxcol')


def list_ok():
    try:
        topics('--list')
        return True
    except Exception:
        return False


try:
    main()
finally:
    for proc in started:
        stop(proc)
