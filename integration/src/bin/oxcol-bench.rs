//! `oxcol-bench`: an OTLP sink that counts what it receives (`sink`) and an OTLP load
//! generator (`load`), for end-to-end tests and benchmarks of oxcol. See integration/README.md.

use clap::{Args, Parser, Subcommand, ValueEnum};
use oxcol_core::Signal;
use oxcol_integration::load::{self, Compression, LoadConfig, Protocol};
use oxcol_integration::otlp::{RequestShape, parse_grpc_code};
use oxcol_integration::sink::{self, FaultMode, SinkConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "oxcol-bench",
    about = "OTLP sink and load generator for oxcol tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve OTLP/gRPC and OTLP/HTTP, count accepted items, inject faults on demand.
    Sink(SinkArgs),
    /// Send pre-encoded OTLP requests and print a JSON summary.
    Load(LoadArgs),
    /// Run several collectors in turn on the same load and compare throughput, CPU and RSS.
    Compare(CompareArgs),
}

#[derive(Args)]
struct SinkArgs {
    /// OTLP/gRPC listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    grpc: SocketAddr,
    /// OTLP/HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// Control server address (GET /stats, POST /reset, GET|POST /mode).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Write each accepted request body (decompressed protobuf) to DIR as NNNNNNNN-<signal>.pb.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Fail the next N requests.
    #[arg(long, default_value_t = 0)]
    fail_next: u64,
    /// gRPC code of injected failures (unavailable, resource_exhausted, invalid_argument, ...).
    #[arg(long, value_parser = check_grpc_code)]
    grpc_code: Option<String>,
    /// HTTP status of injected failures (503, 429, 400, ...).
    #[arg(long)]
    http_status: Option<u16>,
    /// Retry-After header (seconds) on HTTP failures.
    #[arg(long)]
    retry_after_secs: Option<u64>,
    /// google.rpc.RetryInfo delay (seconds) in gRPC failure details.
    #[arg(long)]
    retry_info_secs: Option<u64>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Start down: answer every request UNAVAILABLE / 503 until POST /mode {"down": false}.
    #[arg(long)]
    down: bool,
    /// Accept requests but report N items rejected in partial_success.
    #[arg(long, default_value_t = 0)]
    partial_reject: u64,
}

#[derive(Args)]
struct LoadArgs {
    /// gRPC `host:port` or HTTP `http://host:port`; defaults to 127.0.0.1:4317 / http://127.0.0.1:4318.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long, value_enum, default_value_t = ProtocolArg::Grpc)]
    protocol: ProtocolArg,
    #[arg(long, value_enum, default_value_t = SignalArg::Metrics)]
    signal: SignalArg,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Resources per request.
    #[arg(long, default_value_t = 4)]
    resources: usize,
    /// Metrics per resource (traces/logs: metrics x points items per resource).
    #[arg(long, default_value_t = 10)]
    metrics: usize,
    /// Data points per metric.
    #[arg(long, default_value_t = 10)]
    points: usize,
    /// Attributes per data point (metrics only).
    #[arg(long, default_value_t = 3)]
    attributes: usize,
    /// Distinct pre-encoded requests, sent round-robin.
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// gRPC channels (HTTP/2 connections) shared by the concurrent requests.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Items per second; 0 sends flat out.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to send (Go syntax: 10s, 500ms, 1m). Default 10s, or unlimited with --total-points.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after sending this many items (whole requests).
    #[arg(long)]
    total_points: Option<u64>,
    /// Retry refused requests with a small backoff until accepted or the run ends.
    #[arg(long)]
    retry: bool,
    /// Per-request timeout (Go syntax).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Grpc,
    Http,
}

#[derive(Clone, Copy, ValueEnum)]
enum SignalArg {
    Metrics,
    Traces,
    Logs,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Zstd,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    oxcol_core::duration::parse_go_duration(text)
}

fn check_grpc_code(text: &str) -> Result<String, String> {
    parse_grpc_code(text).map(|_| text.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("oxcol-bench: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Sink(args) => runtime.block_on(run_sink(args)),
        Command::Load(args) => runtime.block_on(run_load(args)),
        Command::Compare(args) => runtime.block_on(run_compare(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("oxcol-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sink(args: SinkArgs) -> Result<(), String> {
    let mode = FaultMode {
        fail_next: args.fail_next,
        grpc_code: args.grpc_code,
        http_status: args.http_status,
        retry_after_secs: args.retry_after_secs,
        retry_info_secs: args.retry_info_secs,
        delay_ms: args.delay_ms,
        down: args.down,
        partial_reject: args.partial_reject,
    };
    let config = SinkConfig {
        grpc_addr: args.grpc,
        http_addr: args.http,
        control_addr: args.control,
        mode,
        record_dir: args.record,
    };
    let running = sink::start(config)
        .await
        .map_err(|error| error.to_string())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", running.addresses_json())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    drop(stdout);
    wait_for_termination().await;
    running.shutdown();
    Ok(())
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_load(args: LoadArgs) -> Result<(), String> {
    let protocol = match args.protocol {
        ProtocolArg::Grpc => Protocol::Grpc,
        ProtocolArg::Http => Protocol::Http,
    };
    let endpoint = args.endpoint.unwrap_or_else(|| match protocol {
        Protocol::Grpc => "127.0.0.1:4317".to_string(),
        Protocol::Http => "http://127.0.0.1:4318".to_string(),
    });
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err(format!(
            "--rate {} must be 0 (flat out) or a positive number of items per second",
            args.rate
        ));
    }
    let duration = match (args.duration, args.total_points) {
        (None, None) => Some(Duration::from_secs(10)),
        (duration, _) => duration,
    };
    let config = LoadConfig {
        protocol,
        endpoint,
        signal: match args.signal {
            SignalArg::Metrics => Signal::Metrics,
            SignalArg::Traces => Signal::Traces,
            SignalArg::Logs => Signal::Logs,
        },
        shape: RequestShape {
            resources: args.resources,
            metrics: args.metrics,
            points: args.points,
            attributes: args.attributes,
        },
        pool: args.pool,
        concurrency: args.concurrency,
        connections: args.connections,
        rate: args.rate,
        duration,
        total_points: args.total_points,
        compression: match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        retry: args.retry,
        request_timeout: args.timeout,
    };
    let summary = load::run(config).await?;
    let text = serde_json::to_string(&summary).map_err(|error| error.to_string())?;
    println!("{text}");
    Ok(())
}

#[derive(Args)]
struct CompareArgs {
    /// A system under test: NAME=COMMAND TEMPLATE (repeat). Placeholders: {grpc_port} (its
    /// OTLP/gRPC receiver), {http_port}, {port1}..{port3}, {sink_grpc}, {sink_http} (host:port),
    /// {work_dir}, {round}, {system}, --set names, {config:PATH} (PATH with placeholders
    /// filled in, written to the work dir; becomes that file's path).
    #[arg(long = "system", value_name = "NAME=COMMAND", required = true)]
    systems: Vec<String>,
    /// System the ratios are computed against (default: the first --system).
    #[arg(long)]
    baseline: Option<String>,
    /// Rounds; each round runs every load on every system, in the order given.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Loads, comma-separated: points/s, 0 = flat out, `idle` = no load (sample only).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    rate: Vec<String>,
    /// Length of each load (or idle sample), Go syntax.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    duration: Duration,
    #[arg(long, default_value_t = 4)]
    resources: usize,
    #[arg(long, default_value_t = 10)]
    metrics: usize,
    #[arg(long, default_value_t = 10)]
    points: usize,
    #[arg(long, default_value_t = 3)]
    attributes: usize,
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// gRPC connections of the load generator.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Extra placeholder for the templates: NAME=VALUE (repeat).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Work directory (generated configs, the systems' logs); default a new one under $TMPDIR.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Limit for a system to listen and deliver a first request (Go syntax).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    ready_timeout: Duration,
    /// Limit for the sink to receive every accepted point after the load.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    drain_timeout: Duration,
    /// RSS sampling interval.
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    sample_interval: Duration,
    /// Pause between runs.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pause: Duration,
    /// Write the full report (every run, medians, ratios) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the markdown table here (it is printed on stdout as well).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

async fn run_compare(args: CompareArgs) -> Result<(), String> {
    use oxcol_integration::compare::{self, CompareConfig, SystemSpec};
    let systems = args
        .systems
        .iter()
        .map(|text| SystemSpec::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let rates = args
        .rate
        .iter()
        .map(|text| match text.trim() {
            "idle" => Ok(None),
            number => number
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("--rate {number:?}: expected points/s, 0 or idle")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut vars = std::collections::BTreeMap::new();
    for text in &args.set {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("--set {text:?}: expected NAME=VALUE"))?;
        vars.insert(name.to_string(), value.to_string());
    }
    let bench_binary = std::env::current_exe()
        .map_err(|error| format!("cannot find the oxcol-bench executable: {error}"))?;
    let defaults = CompareConfig::default();
    let config = CompareConfig {
        systems,
        baseline: args.baseline,
        rounds: args.rounds,
        rates,
        duration: args.duration,
        shape: RequestShape {
            resources: args.resources,
            metrics: args.metrics,
            points: args.points,
            attributes: args.attributes,
        },
        pool: args.pool,
        concurrency: args.concurrency,
        connections: args.connections,
        compression: match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        bench_binary,
        vars,
        work_dir: args.work_dir.unwrap_or(defaults.work_dir),
        keep: args.keep,
        ready_timeout: args.ready_timeout,
        drain_timeout: args.drain_timeout,
        sample_interval: args.sample_interval,
        pause: args.pause,
        verbose: !args.quiet,
        proc_root: defaults.proc_root,
    };
    // Ctrl-C / SIGTERM drop the running comparison: its guards stop every child.
    let report = tokio::select! {
        report = compare::run(config) => report?,
        _ = wait_for_termination() => return Err("interrupted".into()),
    };
    let table = compare::report::markdown(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?;
        std::fs::write(path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &table)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    print!("{table}");
    let failed = report.runs.iter().filter(|run| run.error.is_some()).count();
    if failed == report.runs.len() {
        return Err(format!(
            "every run failed; first error: {}",
            report.runs[0].error.clone().unwrap_or_default()
        ));
    }
    Ok(())
}
