//! `oxcol`: an OpenTelemetry Collector-compatible agent.
//!
//! `oxcol --config FILE [--config FILE ...] [--set path=value]` runs; with no `--config`
//! it runs the embedded default (`configs/default.yaml`). `oxcol validate`, `oxcol
//! components` and `oxcol print-config` check, list and print.

mod extensions;
mod picture;
mod pipeline;
// One line per component type in the tables (see its WIRING comments), so rustfmt leaves it as written.
#[rustfmt::skip]
mod registry;
mod reload;
mod service;
mod settings;
mod telemetry;
mod telemetry_sdk;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use oxcol_config::{ConfigError, Source};

#[global_allocator]
static ALLOCATOR: oxcol_core::process::CountingAllocator = oxcol_core::process::CountingAllocator;

const DEFAULT_CONFIG: &str = include_str!("../../configs/default.yaml");

#[derive(Parser)]
#[command(
    name = "oxcol",
    version,
    about = "An OpenTelemetry Collector-compatible agent for Go services in containers"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Reload when a `--config` file changes (content hash polled every second; a
    /// Kubernetes ConfigMap symlink swap counts). SIGHUP always reloads.
    #[arg(long = "watch-config")]
    watch_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// Config file (repeat to merge several, later wins). Also `file:PATH`, `env:VAR`
    /// (the YAML is in the variable) and `yaml:TEXT`. Default: the embedded config.
    #[arg(long = "config", global = true)]
    configs: Vec<String>,
    /// Override one value: `--set exporters.otlp.endpoint=host:4317` (`::` also separates).
    #[arg(long = "set", global = true)]
    sets: Vec<String>,
    /// Accepted for Collector compatibility; oxcol has no feature gates yet.
    #[arg(long = "feature-gates", global = true)]
    feature_gates: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and report every problem as file:line:column: message.
    Validate,
    /// List every component type by kind.
    Components,
    /// Print the resolved config (files merged, --set applied, env expanded), secrets redacted.
    PrintConfig,
}

fn sources(args: &ConfigArgs) -> Result<Vec<Source>, Vec<ConfigError>> {
    if args.configs.is_empty() {
        return Ok(vec![Source::Text {
            name: "<embedded default config>".to_string(),
            text: DEFAULT_CONFIG.to_string(),
        }]);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for spec in &args.configs {
        if let Some(path) = spec.strip_prefix("file:") {
            out.push(Source::File(path.into()));
        } else if let Some(var) = spec.strip_prefix("env:") {
            match std::env::var(var) {
                Ok(text) => out.push(Source::Text {
                    name: format!("env:{var}"),
                    text,
                }),
                Err(_) => errors.push(ConfigError::new(
                    None,
                    format!("--config env:{var}: the environment variable {var} is not set"),
                )),
            }
        } else if let Some(text) = spec.strip_prefix("yaml:") {
            // The Collector's `yaml:` scheme uses `::` as the key separator.
            out.push(Source::Text {
                name: "--config yaml:".to_string(),
                text: text.replace("::", ":\n  "),
            });
        } else {
            out.push(Source::File(spec.into()));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn load(args: &ConfigArgs) -> Result<oxcol_config::Node, Vec<ConfigError>> {
    let sources = sources(args)?;
    oxcol_config::load(&sources, &args.sets, &|name| std::env::var(name).ok())
}

/// A loaded, checked config.
pub(crate) struct Loaded {
    settings: settings::Settings,
    configs: std::collections::HashMap<(registry::Kind, String), registry::ComponentConfig>,
    /// The hash of the resolved config (`reload::config_hash`).
    hash: String,
}

/// Loads, checks structure and decodes every component: all errors at once.
fn load_checked(args: &ConfigArgs) -> Result<Loaded, Vec<ConfigError>> {
    let root = load(args)?;
    let hash = reload::config_hash(&root);
    let (settings, mut errors) = settings::read(&root);
    // Decode components even when the structure has errors, to report everything.
    let configs = match service::decode_all(&settings) {
        Ok(configs) => configs,
        Err(mut decode_errors) => {
            errors.append(&mut decode_errors);
            Default::default()
        }
    };
    if errors.is_empty() {
        return Ok(Loaded {
            settings,
            configs,
            hash,
        });
    }
    // In file order, so the report reads top to bottom.
    errors.sort_by_key(|e| {
        e.location
            .as_ref()
            .map(|l| (l.source.to_string(), l.line, l.column))
    });
    Err(errors)
}

fn report(errors: &[ConfigError]) {
    for error in errors {
        eprintln!("{error}");
    }
    eprintln!(
        "{} problem{} found in the configuration",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}

fn main() -> ExitCode {
    oxcol_core::process::mark_installed();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Components) => {
            print!("{}", registry::components_listing());
            ExitCode::SUCCESS
        }
        Some(Command::PrintConfig) => match load(&cli.config) {
            Ok(root) => {
                print!("{}", oxcol_config::to_yaml_redacted(&root));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                report(&errors);
                ExitCode::FAILURE
            }
        },
        Some(Command::Validate) => match load_checked(&cli.config) {
            Ok(_) => {
                eprintln!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                report(&errors);
                ExitCode::FAILURE
            }
        },
        None => run(&cli.config, cli.watch_config),
    }
}

fn run(args: &ConfigArgs, watch_config: bool) -> ExitCode {
    let loaded = match load_checked(args) {
        Ok(loaded) => loaded,
        Err(errors) => {
            report(&errors);
            return ExitCode::FAILURE;
        }
    };
    telemetry::init_logging(&loaded.settings.telemetry.logs);
    // Blocking-pool threads (file reads of the scrapers) live across a 10 s scrape
    // interval instead of exiting after tokio's default 10 s idle and being created again:
    // each new thread can attach to another glibc malloc arena, and an idle sidecar's
    // anonymous memory grew by ~30 KiB a minute that way.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("oxcol")
        .thread_keep_alive(std::time::Duration::from_secs(120))
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Before anything listens: a SIGHUP or SIGTERM sent as soon as a port answers
        // must reload or stop, not end the process by the signal's default action.
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(error) => {
                tracing::error!("cannot listen for signals: {error}");
                return ExitCode::FAILURE;
            }
        };
        let registry = oxcol_core::telemetry::Registry::new();
        let mut reloader = reload::Reloader::new(args.clone(), loaded, Arc::clone(&registry));
        let mut running = match reloader.start().await {
            Ok(running) => running,
            Err(error) => {
                tracing::error!("cannot start: {error}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(pipelines = reloader.pipelines(), hash = reloader.hash(), "oxcol is running");
        release_start_up_pages();
        let watched = reload::watched_files(&args.configs);
        if watch_config && watched.is_empty() {
            tracing::warn!("--watch-config: no --config file to watch (env: and yaml: sources and the embedded config are not files); SIGHUP still reloads");
        }
        let mut watcher = (watch_config && !watched.is_empty()).then(|| reload::Watcher::new(watched));
        loop {
            let died = running.pipeline_died.clone();
            let why = tokio::select! {
                _ = signals.terminate.recv() => {
                    tracing::info!("received SIGTERM");
                    break;
                }
                _ = signals.interrupt.recv() => {
                    tracing::info!("received SIGINT");
                    break;
                }
                _ = died.cancelled() => {
                    running.set_unhealthy();
                    tracing::error!("a pipeline died; stopping");
                    break;
                }
                _ = signals.hangup.recv() => "SIGHUP",
                _ = reload::Watcher::changed_opt(&mut watcher) => "a config file changed",
            };
            running = match reloader.reload(running, why).await {
                Ok(running) => running,
                Err(error) => {
                    tracing::error!("{error}; stopping");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(watcher) = &mut watcher {
                watcher.refresh();
            }
        }
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Code that only start-up ran (config, validation, building components) and the first
/// scrapes and connections ran stays resident, as clean file pages, for the life of the
/// process: most of a sidecar's RSS. Drop those pages from this process' page tables now
/// and once more after the first minute (first scrapes, handshakes); what the steady state
/// uses faults back in from the page cache. See `oxcol_core::process::release_clean_file_pages`.
fn release_start_up_pages() {
    fn release(when: &str) {
        match oxcol_core::process::release_clean_file_pages() {
            Ok(released) => tracing::debug!(
                when,
                mappings = released.mappings,
                resident_mib = released.resident_bytes as f64 / 1048576.0,
                "released start-up code pages"
            ),
            Err(error) => {
                tracing::debug!(when, %error, "cannot read /proc/self/smaps; start-up code pages stay resident")
            }
        }
    }
    release("started");
    tokio::spawn(async {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        release("after the first minute");
    });
}

/// The signals oxcol acts on: SIGTERM and SIGINT stop it, SIGHUP reloads the config.
/// Registered once, so a signal arriving during a reload is not lost.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}
