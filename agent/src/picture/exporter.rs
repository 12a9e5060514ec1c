//! `memory_picture` exporter (oxcol's own, not a Collector component): prints the memory
//! picture to stdout at most once per `interval` — working set against limit with trend
//! and time-to-limit per cgroup, PSI, the top processes by PSS, leak suspects and SLOs
//! when the data has them, and where the status page is. The embedded default config uses
//! it, so a first run shows the machine instead of counts; the `debug` exporter's
//! Collector-compatible output stays for configs that name `debug`.
//!
//! It reads the service's [`PictureHandle`]; the batches sent to it are what the picture
//! already saw (every pipeline of a config that has this exporter is tapped), so it only
//! counts them and never fails a send. It must never block a pipeline on a terminal:
//! printing happens in its queue's consumer, one block per interval.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter, GoDuration};
use serde::Deserialize;

use super::{PictureHandle, Style, render};

pub const TYPE: &str = "memory_picture";
pub const ALIASES: &[&str] = &["memory_picture"];

/// When the first block may be printed after start: long enough for the first scrapes of
/// the receivers started together to arrive, so the first block is not half empty.
const FIRST_BLOCK_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// Colour when stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// One block per interval, printed when data arrives (see `due_block`). Default 10s.
    pub interval: GoDuration,
    /// Processes listed, largest PSS first. Default 5.
    pub top_processes: usize,
    /// `auto` (default), `always` or `never`.
    pub color: ColorMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: GoDuration::from_secs(10),
            top_processes: 5,
            color: ColorMode::Auto,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.interval.is_zero() {
            errors.push("interval must be greater than 0 (e.g. 10s)".to_string());
        }
        if self.top_processes > 1000 {
            errors.push(format!(
                "top_processes {} is more than a terminal shows; use at most 1000",
                self.top_processes
            ));
        }
        errors
    }

    fn color(&self) -> bool {
        match self.color {
            ColorMode::Always => true,
            ColorMode::Never => false,
            ColorMode::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

pub struct MemoryPictureExporter {
    id: String,
    picture: PictureHandle,
    interval: Duration,
    style: Style,
    schedule: Mutex<Schedule>,
}

impl MemoryPictureExporter {
    pub fn new(id: &str, config: &Config, picture: PictureHandle) -> MemoryPictureExporter {
        MemoryPictureExporter {
            id: id.to_string(),
            picture,
            interval: config.interval.get(),
            style: Style {
                color: config.color(),
                top_processes: config.top_processes,
            },
            schedule: Mutex::new(Schedule {
                next: Instant::now() + FIRST_BLOCK_AFTER.min(config.interval.get()),
                printed: false,
            }),
        }
    }

    /// The block to print now, if it is time. Blocks follow a fixed grid of `interval`
    /// from the first one, and data up to a fifth of an interval early still prints the
    /// block (a scrape every `interval` arrives with some jitter), so a block per scrape is
    /// never skipped. The first block waits for [`FIRST_BLOCK_AFTER`].
    pub(super) fn due_block(&self, now: Instant) -> Option<String> {
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        let early = if schedule.printed {
            self.interval / 5
        } else {
            Duration::ZERO
        };
        if now + early < schedule.next {
            return None;
        }
        while schedule.next <= now + early {
            schedule.next += self.interval;
        }
        schedule.printed = true;
        drop(schedule);
        Some(render(&self.picture.snapshot(), self.style))
    }
}

/// When blocks are printed.
struct Schedule {
    /// The next grid point.
    next: Instant,
    /// Whether a block was printed yet.
    printed: bool,
}

impl Exporter for MemoryPictureExporter {
    fn export(&self, _batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            if let Some(block) = self.due_block(Instant::now()) {
                let mut stdout = std::io::stdout().lock();
                if let Err(error) = stdout
                    .write_all(block.as_bytes())
                    .and_then(|()| stdout.write_all(b"\n"))
                    .and_then(|()| stdout.flush())
                {
                    // A closed stdout must not stop the data: the block is dropped.
                    tracing::debug!(exporter = %self.id, %error, "cannot print the memory picture");
                }
            }
            Ok(ExportOutcome::default())
        })
    }
}
