//! The sending queue and retry that wrap every exporter (the Collector's exporterhelper):
//! `sending_queue` bounds what waits to be sent, `retry_on_failure` retries retryable
//! failures with exponential backoff and jitter, honouring the server's requested delay.
//!
//! Layers, outermost first: queue (bounded; full -> the pipeline refuses upstream) ->
//! consumers (`num_consumers` concurrent sends) -> retry -> the exporter's single attempt.
//! A batch leaves the queue only as sent, as a permanent failure (counted, logged), or as
//! given up after `max_elapsed_time` or at shutdown (counted, logged). Never silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::disk_queue::{self, DiskQueue};
use oxcol_core::client::Metadata;
use oxcol_core::telemetry::{ExporterCounters, Registry};
use oxcol_core::{Batch, BatchSettings, ExportError, Exporter, GoDuration, Refusal, Signal};
use rand::Rng;
use serde::Deserialize;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `sending_queue` as in the Collector.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Default true. When false, the pipeline waits for each send (with retries).
    pub enabled: bool,
    /// Concurrent senders. Default 10.
    pub num_consumers: usize,
    /// Capacity, in the units of `sizer`. Default 1000 (requests).
    pub queue_size: usize,
    /// A `file_storage` extension id (`file_storage` or `file_storage/NAME`, listed in
    /// `service.extensions`): keep the queue on disk there. Default none (in memory).
    /// With it, the queue is bounded by the extension's `max_size_mib`, not `queue_size`.
    pub storage: Option<String>,
    /// Collector key: wait for room instead of refusing when full. Default false.
    /// `block_on_overflow` is its newer name.
    #[serde(alias = "block_on_overflow")]
    pub blocking: bool,
    /// Collector key: what `queue_size` counts: `requests` (batches as they arrive,
    /// default), `items` (points, spans, log records) or `bytes` (encoded OTLP bytes:
    /// bounds the memory the queue holds). Memory queue only; a disk queue is bounded by
    /// its extension's `max_size_mib`.
    pub sizer: Sizer,
    /// Exporter-side batching (the Collector's `exporterhelper` keys, v0.12x+): `batch:`
    /// alone enables it with the defaults. In oxcol it sets how the queue groups what it
    /// sends (the same grouping a `batch` processor in front of this exporter sets; when
    /// both are configured, this one wins). Default: off.
    #[serde(deserialize_with = "enabled_with_defaults")]
    pub batch: Option<QueueBatchConfig>,
}

/// `batch: ` with no value means "enabled with defaults", as `configoptional` reads it.
fn enabled_with_defaults<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `sending_queue.batch`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// Longest wait for a batch to reach `min_size`. Default 200ms.
    pub flush_timeout: GoDuration,
    /// What the sizes count: `items` (default; points, spans, log records). oxcol groups
    /// by items only, so `bytes` is refused.
    pub sizer: Sizer,
    /// Items that make a batch ready to send. Default 8192.
    pub min_size: u64,
    /// Largest batch sent; bigger ones are split. Default 0 (no limit).
    pub max_size: u64,
    /// Batching per client metadata: `metadata_keys` forms batches per distinct
    /// combination of these keys' values, as the `batch` processor's `metadata_keys`.
    pub partition: Option<QueueBatchPartition>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchPartition {
    pub metadata_keys: Vec<String>,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        QueueBatchConfig {
            flush_timeout: GoDuration(Duration::from_millis(200)),
            sizer: Sizer::Items,
            min_size: 8192,
            max_size: 0,
            partition: None,
        }
    }
}

impl QueueBatchConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.sizer {
            Sizer::Items => {}
            Sizer::Bytes => errors.push("sending_queue.batch.sizer: bytes is not supported; oxcol groups batches by items (use sizer: items)".to_string()),
            Sizer::Requests => errors.push("sending_queue.batch.sizer: `batch` supports only items or bytes, as in the Collector (use sizer: items)".to_string()),
        }
        if self.flush_timeout.get().is_zero() {
            errors.push("sending_queue.batch.flush_timeout must be positive".to_string());
        }
        if self.max_size > 0 && self.max_size < self.min_size {
            errors.push(format!(
                "sending_queue.batch.max_size ({}) must be greater or equal to min_size ({})",
                self.max_size, self.min_size
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for key in self.partition.iter().flat_map(|p| &p.metadata_keys) {
            if !seen.insert(key.to_ascii_lowercase()) {
                errors.push(format!(
                    "sending_queue.batch.partition.metadata_keys: duplicate entry {:?} (keys are case-insensitive)",
                    key.to_ascii_lowercase()
                ));
            }
        }
        errors
    }

    /// The queue grouping this asks for.
    pub fn settings(&self) -> BatchSettings {
        BatchSettings {
            send_batch_size: self.min_size,
            send_batch_max_size: self.max_size,
            timeout: self.flush_timeout.get(),
            metadata_keys: self
                .partition
                .iter()
                .flat_map(|p| &p.metadata_keys)
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            metadata_cardinality_limit: 0,
        }
    }
}

/// What `sending_queue.queue_size` counts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    #[default]
    Requests,
    Items,
    Bytes,
}

impl Sizer {
    /// The size of `batch` in this sizer's units.
    fn size_of(self, batch: &Batch) -> u64 {
        match self {
            Sizer::Requests => 1,
            Sizer::Items => batch.items(),
            Sizer::Bytes => batch.encoded_len() as u64,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            storage: None,
            blocking: false,
            sizer: Sizer::Requests,
            batch: None,
        }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.enabled && self.queue_size == 0 {
            errors.push("sending_queue.queue_size must be greater than 0".to_string());
        }
        if self.enabled && self.num_consumers == 0 {
            errors.push("sending_queue.num_consumers must be greater than 0".to_string());
        }
        if let Some(storage) = &self.storage {
            if storage.split('/').next() != Some(crate::disk_queue::config::TYPE) {
                errors.push(format!("sending_queue.storage: {storage:?} is not a file_storage extension id; write file_storage or file_storage/NAME"));
            } else if !self.enabled {
                errors.push("sending_queue.storage needs sending_queue.enabled: true".to_string());
            } else if self.sizer != Sizer::Requests {
                errors.push("sending_queue.sizer: a disk queue (storage) is bounded by its file_storage extension's max_size_mib; remove sizer or use the memory queue".to_string());
            }
        }
        if self.blocking {
            errors.push("sending_queue.blocking: true is not supported; a full queue refuses upstream with a retryable error".to_string());
        }
        if let Some(batch) = &self.batch {
            errors.extend(batch.validate());
            if self.enabled && batch.sizer == self.sizer && batch.min_size > self.queue_size as u64
            {
                errors.push(
                    "sending_queue.batch.min_size must be less than or equal to queue_size"
                        .to_string(),
                );
            }
        }
        errors
    }

    /// The grouping `sending_queue.batch` asks for, if set.
    pub fn batching(&self) -> Option<BatchSettings> {
        self.batch.as_ref().map(QueueBatchConfig::settings)
    }
}

/// `retry_on_failure` as in the Collector, with its defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Default true.
    pub enabled: bool,
    /// First wait after a failure. Default 5s.
    pub initial_interval: GoDuration,
    /// Jitter: each wait is drawn from [w*(1-f), w*(1+f)]. Default 0.5.
    pub randomization_factor: f64,
    /// Growth of the wait after each failure. Default 1.5.
    pub multiplier: f64,
    /// Upper bound of one wait. Default 30s.
    pub max_interval: GoDuration,
    /// Give up after this long since the first attempt; 0 = never. Default 300s.
    pub max_elapsed_time: GoDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: GoDuration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errors
                .push("retry_on_failure.randomization_factor must be between 0 and 1".to_string());
        }
        if self.multiplier < 1.0 {
            errors.push("retry_on_failure.multiplier must be at least 1".to_string());
        }
        errors
    }

    fn jittered(&self, interval: Duration) -> Duration {
        let factor = self.randomization_factor;
        if factor <= 0.0 {
            return interval;
        }
        let scale = rand::rng().random_range((1.0 - factor)..=(1.0 + factor));
        interval.mul_f64(scale)
    }
}

/// One exporter instance for one signal, with its queue and consumers.
pub struct QueuedExporter {
    id: String,
    signal: Signal,
    sender: std::sync::RwLock<Option<mpsc::UnboundedSender<(Batch, u64)>>>,
    /// How full the memory queue is, in `sizer` units (the channel itself is unbounded).
    level: Arc<QueueLevel>,
    inline: Option<Arc<Sender>>,
    consumers: Mutex<JoinSet<()>>,
    give_up: CancellationToken,
    counters: ExporterCounters,
    /// The disk queue, with `sending_queue.storage` (then `sender` is None).
    disk: Option<Arc<DiskQueue>>,
    /// `metadata_keys` batching: the partition each submitted batch joins.
    partitions: Option<Partitions>,
}

/// The `metadata_keys` partitions of a queue, as the Collector's batch processor forms
/// them: one per distinct combination of the keys' values, kept for the life of the
/// queue, at most `limit` of them (0 = no limit). Each partition's batches share one
/// metadata holding only those keys, so they merge with each other and no other.
struct Partitions {
    keys: Vec<String>,
    limit: u64,
    known: std::sync::Mutex<std::collections::HashMap<Vec<Vec<String>>, Arc<Metadata>>>,
}

impl Partitions {
    fn new(batching: Option<&BatchSettings>) -> Option<Partitions> {
        let settings = batching.filter(|b| !b.metadata_keys.is_empty())?;
        Some(Partitions {
            keys: settings
                .metadata_keys
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect(),
            limit: settings.metadata_cardinality_limit,
            known: Default::default(),
        })
    }

    /// Gives `batch` the metadata of its partition (creating the partition if there is
    /// room). The error is the Collector's; it never shows a value.
    fn assign(&self, batch: &mut Batch) -> Result<(), String> {
        let values = match batch.metadata() {
            Some(metadata) => metadata.partition_key(&self.keys),
            None => vec![Vec::new(); self.keys.len()],
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let limit = self.limit;
        let count = known.len() as u64;
        let metadata = match known.entry(values) {
            std::collections::hash_map::Entry::Occupied(found) => Arc::clone(found.get()),
            std::collections::hash_map::Entry::Vacant(_) if limit > 0 && count >= limit => {
                return Err(format!(
                    "too many batcher metadata-value combinations (metadata_cardinality_limit {limit} reached for metadata_keys {:?})",
                    self.keys
                ));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                let metadata = Arc::new(Metadata::from_partition(&self.keys, slot.key()));
                Arc::clone(slot.insert(metadata))
            }
        };
        batch.set_metadata(Some(metadata));
        Ok(())
    }
}

/// The memory queue as the consumers see it: the channel, and the batches a gathering
/// consumer took out but left for another partition (taken first, in order).
struct Inbox {
    rx: mpsc::UnboundedReceiver<(Batch, u64)>,
    stash: std::collections::VecDeque<(Batch, u64)>,
}

/// The occupancy of a memory queue in its sizer's units: reserved when a batch is
/// placed, released when a consumer takes it out (`requests`, as the Collector counts)
/// or, for `items` and `bytes`, once it is sent: so a byte bound covers all the data the
/// exporter holds, queued or being sent.
struct QueueLevel {
    sizer: Sizer,
    capacity: u64,
    used: std::sync::atomic::AtomicU64,
}

impl QueueLevel {
    fn new(sizer: Sizer, capacity: usize) -> QueueLevel {
        QueueLevel {
            sizer,
            capacity: capacity as u64,
            used: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes `size` units if they fit. An empty queue takes one batch of any size, so a
    /// request larger than the whole bound (possible with `bytes`/`items`) is still sent
    /// rather than refused for ever.
    fn try_reserve(&self, size: u64) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used + size <= self.capacity).then_some(used + size)
            })
            .is_ok()
    }

    /// Whether a taken batch keeps its reservation until it is sent.
    fn counts_in_flight(&self) -> bool {
        self.sizer != Sizer::Requests
    }

    fn release(&self, size: u64) {
        self.used
            .fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The retrying sender shared by the consumers.
struct Sender {
    id: String,
    exporter: Arc<dyn Exporter>,
    retry: RetryConfig,
    counters: ExporterCounters,
    give_up: CancellationToken,
    /// With a disk queue, what is left at shutdown stays on disk (not counted as failed).
    durable: bool,
}

impl QueuedExporter {
    /// Starts the consumers. Must be called inside a tokio runtime.
    pub fn start(
        id: &str,
        signal: Signal,
        exporter: Arc<dyn Exporter>,
        queue: &QueueConfig,
        retry: &RetryConfig,
        batching: Option<BatchSettings>,
        counters: ExporterCounters,
    ) -> QueuedExporter {
        let give_up = CancellationToken::new();
        let sender = Arc::new(Sender {
            id: id.to_string(),
            exporter,
            retry: retry.clone(),
            counters: counters.clone(),
            give_up: give_up.clone(),
            durable: false,
        });
        let mut consumers = JoinSet::new();
        let level = Arc::new(QueueLevel::new(queue.sizer, queue.queue_size));
        let partitions = Partitions::new(batching.as_ref());
        if !queue.enabled {
            return QueuedExporter {
                id: id.to_string(),
                signal,
                sender: std::sync::RwLock::new(None),
                level,
                inline: Some(sender),
                consumers: Mutex::new(consumers),
                give_up,
                counters,
                disk: None,
                partitions,
            };
        }
        counters.queue_capacity.set(queue.queue_size as i64);
        let (tx, rx) = mpsc::unbounded_channel::<(Batch, u64)>();
        let inbox = Arc::new(Mutex::new(Inbox {
            rx,
            stash: Default::default(),
        }));
        for _ in 0..queue.num_consumers {
            let inbox = Arc::clone(&inbox);
            let sender = Arc::clone(&sender);
            let level = Arc::clone(&level);
            let batching = batching.clone();
            consumers.spawn(async move {
                loop {
                    let next =
                        take_batch(&inbox, &level, batching.as_ref(), &sender.counters).await;
                    let Some((batch, in_flight)) = next else {
                        break;
                    };
                    for piece in split_for_send(batch, batching.as_ref(), &sender.id) {
                        // The outcome is already counted and logged by send_with_retry.
                        let _ = sender.send_with_retry(piece).await;
                    }
                    level.release(in_flight);
                    sender.counters.queue_size.add(-(in_flight as i64));
                }
            });
        }
        QueuedExporter {
            id: id.to_string(),
            signal,
            sender: std::sync::RwLock::new(Some(tx)),
            level,
            inline: None,
            consumers: Mutex::new(consumers),
            give_up,
            counters,
            disk: None,
            partitions,
        }
    }

    /// Starts an exporter whose queue is on disk (`sending_queue.storage`): opens the
    /// queue in `storage`'s directory, recovering what a previous run left (corrupt
    /// records are counted and skipped, never fatal), and starts the consumers, which
    /// commit a record only after its send finished. Must be called inside a tokio runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn start_durable(
        id: &str,
        signal: Signal,
        exporter: Arc<dyn Exporter>,
        queue: &QueueConfig,
        retry: &RetryConfig,
        batching: Option<BatchSettings>,
        counters: ExporterCounters,
        registry: &Registry,
        storage: &crate::disk_queue::Config,
    ) -> Result<QueuedExporter, String> {
        if batching
            .as_ref()
            .is_some_and(|b| !b.metadata_keys.is_empty())
        {
            return Err("metadata_keys batching (batch processor metadata_keys or sending_queue.batch.partition) needs the memory queue: a disk queue (sending_queue.storage) does not keep client metadata".to_string());
        }
        let options = disk_queue::Options::for_exporter(storage, id, signal);
        if !storage.create_directory {
            let base = storage.directory.clone().unwrap_or_default();
            if !std::path::Path::new(&base).is_dir() {
                return Err(format!(
                    "file_storage directory {base:?} does not exist; create it or set create_directory: true"
                ));
            }
        } else if let Some(base) = &storage.directory {
            create_directory(base, &storage.directory_permissions)?;
        }
        let labels = [("exporter", id)];
        let stats = disk_queue::Stats {
            corrupt_records: registry.counter("oxcol_exporter_disk_queue_corrupt_records", "Corrupt or torn records found in the disk queue (at start or when read) and skipped.", &labels),
            bytes: registry.gauge("oxcol_exporter_disk_queue_bytes", "Bytes of the disk queue's segment files.", &[("exporter", id), ("data_type", signal.name())]),
        };
        registry
            .gauge(
                "oxcol_exporter_disk_queue_capacity_bytes",
                "Bound of the disk queue in bytes (file_storage max_size_mib).",
                &[("exporter", id), ("data_type", signal.name())],
            )
            .set(options.max_bytes as i64);
        let (disk, recovery) = DiskQueue::open(id, &options, stats)?;
        if recovery.records > 0 || recovery.corrupt_records > 0 {
            tracing::info!(exporter = %id, %signal, records = recovery.records, items = recovery.items, corrupt_records = recovery.corrupt_records, dropped_bytes = recovery.dropped_bytes, dir = %options.dir.display(), "disk queue: resuming");
        }
        counters.queue_size.set(recovery.records as i64);
        let disk = Arc::new(disk);
        let give_up = CancellationToken::new();
        let sender = Arc::new(Sender {
            id: id.to_string(),
            exporter,
            retry: retry.clone(),
            counters: counters.clone(),
            give_up: give_up.clone(),
            durable: true,
        });
        let gather = Arc::new(Mutex::new(()));
        let mut consumers = JoinSet::new();
        for _ in 0..queue.num_consumers {
            let (disk, sender, gather) =
                (Arc::clone(&disk), Arc::clone(&sender), Arc::clone(&gather));
            let batching = batching.clone();
            consumers.spawn(async move {
                loop {
                    let taken = take_from_disk(
                        &disk,
                        &gather,
                        batching.as_ref(),
                        &sender.counters,
                        &sender.give_up,
                    )
                    .await;
                    let Some((batch, tickets)) = taken else { break };
                    let mut kept = false;
                    for piece in split_for_send(batch, batching.as_ref(), &sender.id) {
                        // Outcomes are counted and logged by send_with_retry. An error
                        // after give_up means shutdown: the record stays on disk.
                        if sender.send_with_retry(piece).await.is_err()
                            && sender.give_up.is_cancelled()
                        {
                            kept = true;
                            break;
                        }
                    }
                    if kept {
                        break;
                    }
                    disk.ack(&tickets);
                }
            });
        }
        let level = Arc::new(QueueLevel::new(Sizer::Requests, queue.queue_size));
        Ok(QueuedExporter {
            id: id.to_string(),
            signal,
            sender: std::sync::RwLock::new(None),
            level,
            inline: None,
            consumers: Mutex::new(consumers),
            give_up,
            counters,
            disk: Some(disk),
            partitions: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Places the batch in the queue, or refuses it when the queue is full. With the queue
    /// disabled, sends it now (with retries) and returns the outcome.
    pub async fn submit(&self, mut batch: Batch) -> Result<(), Refusal> {
        if let Some(partitions) = &self.partitions {
            partitions.assign(&mut batch).map_err(|reason| {
                tracing::debug!(exporter = %self.id, %reason, "refusing data of a new metadata combination");
                Refusal::Invalid {
                    reason: format!("exporter {}: {reason}", self.id),
                }
            })?;
        }
        if let Some(inline) = &self.inline {
            return inline.send_with_retry(batch).await;
        }
        if let Some(disk) = &self.disk {
            return self.submit_to_disk(disk, batch).await;
        }
        let items = batch.items();
        let size = self.level.sizer.size_of(&batch);
        let guard = self.sender.read().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = guard.as_ref() else {
            return Err(Refusal::Unavailable {
                reason: format!("exporter {} is shut down", self.id),
            });
        };
        if !self.level.try_reserve(size) {
            self.counters.enqueue_failed.add(items);
            return Err(Refusal::overloaded(format!(
                "sending queue of exporter {} is full",
                self.id
            )));
        }
        match sender.send((batch, size)) {
            Ok(()) => {
                self.counters.queue_size.add(size as i64);
                Ok(())
            }
            Err(_) => {
                self.level.release(size);
                Err(Refusal::Unavailable {
                    reason: format!("exporter {} is shut down", self.id),
                })
            }
        }
    }

    /// Appends to the disk queue; Ok only once the record is written (and synced).
    async fn submit_to_disk(&self, disk: &DiskQueue, batch: Batch) -> Result<(), Refusal> {
        let items = batch.items();
        if disk.is_input_closed() {
            return Err(Refusal::Unavailable {
                reason: format!("exporter {} is shut down", self.id),
            });
        }
        match disk.append(self.signal, items, batch.to_bytes()).await {
            Ok(()) => {
                self.counters.queue_size.add(1);
                Ok(())
            }
            Err(disk_queue::AppendError::Closed) => Err(Refusal::Unavailable {
                reason: format!("exporter {} is shut down", self.id),
            }),
            Err(error) => {
                self.counters.enqueue_failed.add(items);
                Err(Refusal::overloaded(format!(
                    "exporter {}: {error}",
                    self.id
                )))
            }
        }
    }

    /// Stops taking batches, lets the consumers drain the queue until `deadline`, then
    /// makes them give up (what is left is counted as failed and logged; with a disk
    /// queue it stays on disk for the next start).
    pub async fn shutdown(&self, deadline: Instant) {
        self.sender
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(disk) = &self.disk {
            disk.close_input();
        }
        let mut consumers = self.consumers.lock().await;
        let drained = tokio::time::timeout_at(deadline.into(), async {
            while consumers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(exporter = %self.id, "shutdown timeout reached with data still queued or in retry; giving up on it");
            self.give_up.cancel();
            // Consumers now finish promptly: waits are cancelled, queued batches counted.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while consumers.join_next().await.is_some() {}
            })
            .await;
            consumers.abort_all();
        }
        if let Some(disk) = &self.disk {
            // Persists the last commit and stops the writer thread.
            let disk = Arc::clone(disk);
            let _ = tokio::task::spawn_blocking(move || disk.close()).await;
        }
    }
}

/// Creates the file_storage directory (`create_directory: true`) with `mode`.
fn create_directory(dir: &str, mode: &str) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8).unwrap_or(0o750);
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(error) => Err(format!(
            "cannot create file_storage directory {dir:?}: {error}"
        )),
    }
}

/// Takes the next batch from the disk queue, grouping like `take_batch`, with the tickets
/// to ack once it is sent.
async fn take_from_disk(
    disk: &DiskQueue,
    gather: &Mutex<()>,
    batching: Option<&BatchSettings>,
    counters: &ExporterCounters,
    stop: &CancellationToken,
) -> Option<(Batch, Vec<u64>)> {
    let _gathering = gather.lock().await;
    let first = disk.next(stop).await?;
    counters.queue_size.add(-1);
    let mut tickets = vec![first.ticket];
    let mut batch = Batch::from_encoded_counted(first.signal, first.payload, first.items);
    let Some(settings) = batching else {
        return Some((batch, tickets));
    };
    let deadline = tokio::time::Instant::now() + settings.timeout;
    while batch.items() < settings.send_batch_size && !stop.is_cancelled() {
        let Some(more) = disk.next_until(deadline).await else {
            break;
        };
        counters.queue_size.add(-1);
        tickets.push(more.ticket);
        if let Err(error) = batch.append(Batch::from_encoded_counted(
            more.signal,
            more.payload,
            more.items,
        )) {
            tracing::error!(%error, "cannot merge queued batches");
        }
    }
    Some((batch, tickets))
}

/// Takes the next batch to send from the queue. With batching, keeps taking queued
/// batches (waiting up to `timeout` for more) until `send_batch_size` items are gathered.
/// With `metadata_keys`, only batches of the first one's partition are merged; the others
/// are stashed in order and taken first by the next gathering (so a stashed batch may wait
/// up to two timeouts). One consumer gathers at a time; the others are sending meanwhile.
/// Returns the batch and the part of the queue's level it still holds (released by the
/// caller once sent).
async fn take_batch(
    inbox: &Mutex<Inbox>,
    level: &QueueLevel,
    batching: Option<&BatchSettings>,
    counters: &ExporterCounters,
) -> Option<(Batch, u64)> {
    let mut in_flight = 0;
    let mut taken = |size: u64| {
        if level.counts_in_flight() {
            in_flight += size;
        } else {
            level.release(size);
            counters.queue_size.add(-(size as i64));
        }
    };
    let mut inbox = inbox.lock().await;
    let Inbox { rx, stash } = &mut *inbox;
    let (mut batch, size) = match stash.pop_front() {
        Some(first) => first,
        None => rx.recv().await?,
    };
    taken(size);
    let Some(settings) = batching else {
        return Some((batch, in_flight));
    };
    let partitioned = !settings.metadata_keys.is_empty();
    // Partitions share one metadata Arc each (Partitions::assign).
    let same_partition = |a: &Batch, b: &Batch| {
        !partitioned
            || match (a.metadata(), b.metadata()) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    };
    let deadline = tokio::time::Instant::now() + settings.timeout;
    while batch.items() < settings.send_batch_size {
        let stashed = stash.iter().position(|(b, _)| same_partition(&batch, b));
        let (more, size) = match stashed.and_then(|at| stash.remove(at)) {
            Some(more) => more,
            None => match rx.try_recv() {
                Ok(more) => more,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(more)) => more,
                        Ok(None) | Err(_) => break,
                    }
                }
            },
        };
        if !same_partition(&batch, &more) {
            stash.push_back((more, size));
            continue;
        }
        taken(size);
        if let Err(error) = batch.append(more) {
            // Only batches of this queue's signal are ever queued.
            tracing::error!(%error, "cannot merge queued batches");
        }
    }
    Some((batch, in_flight))
}

/// Cuts a gathered batch to `send_batch_max_size`.
fn split_for_send(batch: Batch, batching: Option<&BatchSettings>, id: &str) -> Vec<Batch> {
    let max = batching.map(|b| b.send_batch_max_size).unwrap_or(0);
    if max == 0 || batch.items() <= max {
        return vec![batch];
    }
    match batch.clone().split(max) {
        Ok(pieces) => pieces,
        Err(error) => {
            tracing::warn!(exporter = %id, %error, "cannot split batch to send_batch_max_size; sending it whole");
            vec![batch]
        }
    }
}

impl Sender {
    async fn send_with_retry(&self, mut batch: Batch) -> Result<(), Refusal> {
        if self.exporter.sends_encoded() {
            // Each attempt below takes a clone: of shared bytes, not of a decoded tree.
            batch.encode_in_place();
        }
        let items = batch.items();
        let started = Instant::now();
        let mut interval = self.retry.initial_interval.get();
        loop {
            if self.give_up.is_cancelled() {
                if self.durable {
                    tracing::info!(exporter = %self.id, items, "shutting down: unsent data stays in the disk queue for the next start");
                    return Err(Refusal::Unavailable {
                        reason: "exporter shutting down".into(),
                    });
                }
                self.counters.send_failed.add(items);
                tracing::error!(exporter = %self.id, items, "dropping data: shutting down before it could be sent");
                return Err(Refusal::Unavailable {
                    reason: "exporter shutting down".into(),
                });
            }
            let attempt_started = std::time::SystemTime::now();
            let attempt = tokio::select! {
                result = self.exporter.export(batch.clone()) => result,
                _ = self.give_up.cancelled() => continue,
            };
            match &attempt {
                Ok(outcome) => {
                    let rejected = outcome.rejected.min(items);
                    let message = (!outcome.message.is_empty()).then(|| outcome.message.clone());
                    self.counters.trace_attempt(
                        attempt_started,
                        items - rejected,
                        rejected,
                        message,
                    );
                }
                Err(ExportError::Permanent { reason } | ExportError::Retryable { reason, .. }) => {
                    self.counters
                        .trace_attempt(attempt_started, 0, items, Some(reason.clone()));
                }
            }
            match attempt {
                Ok(outcome) => {
                    let rejected = outcome.rejected.min(items);
                    self.counters.sent.add(items - rejected);
                    if rejected > 0 || !outcome.message.is_empty() {
                        self.counters.send_failed.add(rejected);
                        tracing::warn!(exporter = %self.id, rejected, message = %outcome.message, "partial success: the destination rejected part of the data (not retried)");
                    }
                    return Ok(());
                }
                Err(ExportError::Permanent { reason }) => {
                    self.counters.send_failed.add(items);
                    tracing::error!(exporter = %self.id, items, %reason, "dropping data: permanent error, not retried");
                    return Err(Refusal::Invalid { reason });
                }
                Err(ExportError::Retryable { reason, after }) => {
                    if !self.retry.enabled {
                        self.counters.send_failed.add(items);
                        tracing::error!(exporter = %self.id, items, %reason, "dropping data: send failed and retry_on_failure is disabled");
                        return Err(Refusal::Unavailable { reason });
                    }
                    let wait = self.retry.jittered(interval).max(after.unwrap_or_default());
                    let max_elapsed = self.retry.max_elapsed_time.get();
                    if !max_elapsed.is_zero() && started.elapsed() + wait > max_elapsed {
                        self.counters.send_failed.add(items);
                        tracing::error!(exporter = %self.id, items, %reason, "dropping data: no more retries left (max_elapsed_time)");
                        return Err(Refusal::Unavailable { reason });
                    }
                    self.counters.retries.add(items);
                    tracing::debug!(exporter = %self.id, %reason, wait_ms = wait.as_millis() as u64, "send failed, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.give_up.cancelled() => {}
                    }
                    interval = interval
                        .mul_f64(self.retry.multiplier)
                        .min(self.retry.max_interval.get());
                }
            }
        }
    }
}

/// Parses an HTTP `Retry-After` value: delay seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::future::BoxFuture;
    use oxcol_core::ExportOutcome;
    use oxcol_core::telemetry::Registry;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails `failures` times with `error`, then succeeds.
    struct Flaky {
        failures: usize,
        error: ExportError,
        calls: AtomicUsize,
    }

    impl Exporter for Flaky {
        fn export(&self, _batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let result = if call < self.failures {
                Err(self.error.clone())
            } else {
                Ok(ExportOutcome::default())
            };
            Box::pin(async move { result })
        }
    }

    fn fast_retry() -> RetryConfig {
        RetryConfig {
            initial_interval: GoDuration::from_millis(5),
            max_interval: GoDuration::from_millis(20),
            max_elapsed_time: GoDuration::from_secs(5),
            ..RetryConfig::default()
        }
    }

    fn batch() -> Batch {
        Batch::from_metrics(oxcol_core::testdata::metrics_request(1, 1, 3).resource_metrics)
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let flaky = Arc::new(Flaky {
            failures: 3,
            error: ExportError::Retryable {
                reason: "unavailable".into(),
                after: None,
            },
            calls: AtomicUsize::new(0),
        });
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            flaky.clone(),
            &QueueConfig::default(),
            &fast_retry(),
            None,
            counters.clone(),
        );
        queued.submit(batch()).await.unwrap();
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert_eq!(counters.sent.get(), 3);
        assert_eq!(counters.send_failed.get(), 0);
        assert_eq!(counters.retries.get(), 9);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let flaky = Arc::new(Flaky {
            failures: 10,
            error: ExportError::Permanent {
                reason: "bad request".into(),
            },
            calls: AtomicUsize::new(0),
        });
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            flaky.clone(),
            &QueueConfig::default(),
            &fast_retry(),
            None,
            counters.clone(),
        );
        queued.submit(batch()).await.unwrap();
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        assert_eq!(counters.send_failed.get(), 3);
        assert_eq!(counters.sent.get(), 0);
    }

    #[tokio::test]
    async fn server_delay_is_honoured_and_full_queue_refuses() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let flaky = Arc::new(Flaky {
            failures: 1,
            error: ExportError::Retryable {
                reason: "throttled".into(),
                after: Some(Duration::from_millis(300)),
            },
            calls: AtomicUsize::new(0),
        });
        let queue = QueueConfig {
            num_consumers: 1,
            queue_size: 1,
            ..QueueConfig::default()
        };
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            flaky.clone(),
            &queue,
            &fast_retry(),
            None,
            counters.clone(),
        );
        let started = Instant::now();
        queued.submit(batch()).await.unwrap();
        // Give the consumer time to take the first batch into its retry wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        queued.submit(batch()).await.unwrap();
        let refused = queued.submit(batch()).await.unwrap_err();
        assert!(matches!(refused, Refusal::Overloaded { .. }), "{refused:?}");
        assert_eq!(counters.enqueue_failed.get(), 3);
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the RetryInfo/Retry-After delay was not honoured"
        );
        assert_eq!(counters.sent.get(), 6);
    }

    /// Holds every send until released, so queued data stays queued.
    struct Gate {
        open: tokio::sync::Notify,
        calls: AtomicUsize,
    }

    impl Exporter for Gate {
        fn export(&self, _batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                self.open.notified().await;
                Ok(ExportOutcome::default())
            })
        }
    }

    /// With `sizer`, fills a queue of one consumer (stuck in its first send) and returns
    /// how many more batches of 3 points it took before refusing, and the gauges then.
    async fn fill(sizer: Sizer, queue_size: usize) -> (usize, i64, i64, u64) {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let gate = Arc::new(Gate {
            open: tokio::sync::Notify::new(),
            calls: AtomicUsize::new(0),
        });
        let queue = QueueConfig {
            num_consumers: 1,
            queue_size,
            sizer,
            ..QueueConfig::default()
        };
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            gate.clone(),
            &queue,
            &fast_retry(),
            None,
            counters.clone(),
        );
        queued.submit(batch()).await.unwrap();
        while gate.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut accepted = 0;
        while queued.submit(batch()).await.is_ok() {
            accepted += 1;
            assert!(accepted < 10_000, "the queue never filled");
        }
        let (size, capacity, refused) = (
            counters.queue_size.get(),
            counters.queue_capacity.get(),
            counters.enqueue_failed.get(),
        );
        // Everything accepted is still sent once the backend answers.
        let opener = tokio::spawn({
            let gate = gate.clone();
            async move {
                loop {
                    gate.open.notify_waiters();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        opener.abort();
        assert_eq!(
            counters.sent.get(),
            3 * (accepted as u64 + 1),
            "accepted data was lost"
        );
        assert_eq!(counters.queue_size.get(), 0);
        (accepted, size, capacity, refused)
    }

    #[tokio::test]
    async fn sizer_bounds_the_memory_queue_in_requests_items_or_bytes() {
        let one_batch_bytes = batch().encoded_len() as u64;
        // requests: the batch being sent no longer counts (as in the Collector).
        assert_eq!(fill(Sizer::Requests, 5).await, (5, 5, 5, 3));
        // items and bytes: the batch being sent (3 points) still counts, so the bound
        // covers everything the exporter holds. 10 items: 1 sending + 2 queued.
        assert_eq!(fill(Sizer::Items, 10).await, (2, 9, 10, 3));
        let (accepted, size, capacity, _) =
            fill(Sizer::Bytes, (one_batch_bytes * 4 + 1) as usize).await;
        assert_eq!(
            (accepted, size as u64, capacity as u64),
            (3, one_batch_bytes * 4, one_batch_bytes * 4 + 1)
        );
    }

    #[tokio::test]
    async fn an_empty_queue_takes_a_batch_larger_than_its_bound() {
        // A byte bound smaller than one batch would otherwise refuse it for ever: `fill`'s
        // first batch (larger than 10 bytes) is taken, and while it is held nothing more is.
        let (accepted, size, _, _) = fill(Sizer::Bytes, 10).await;
        assert_eq!((accepted, size as u64), (0, batch().encoded_len() as u64));
    }

    #[test]
    fn sizer_is_read_like_the_collector_and_checked_against_storage() {
        let from = |yaml: &str| serde_json::from_str::<QueueConfig>(yaml);
        assert_eq!(
            from(r#"{"sizer": "bytes", "queue_size": 16777216}"#)
                .unwrap()
                .sizer,
            Sizer::Bytes
        );
        assert_eq!(from(r#"{"sizer": "items"}"#).unwrap().sizer, Sizer::Items);
        assert_eq!(from("{}").unwrap().sizer, Sizer::Requests);
        assert!(from(r#"{"sizer": "pages"}"#).is_err());
        let disk_bytes = QueueConfig {
            sizer: Sizer::Bytes,
            storage: Some("file_storage".into()),
            ..QueueConfig::default()
        };
        assert!(
            disk_bytes
                .validate()
                .iter()
                .any(|e| e.contains("max_size_mib")),
            "{:?}",
            disk_bytes.validate()
        );
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_dead_backend_and_counts_it() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let dead = Arc::new(Flaky {
            failures: usize::MAX,
            error: ExportError::Retryable {
                reason: "connection refused".into(),
                after: None,
            },
            calls: AtomicUsize::new(0),
        });
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            dead,
            &QueueConfig::default(),
            &fast_retry(),
            None,
            counters.clone(),
        );
        queued.submit(batch()).await.unwrap();
        queued
            .shutdown(Instant::now() + Duration::from_millis(200))
            .await;
        assert_eq!(counters.send_failed.get(), 3);
        assert_eq!(counters.sent.get(), 0);
    }

    /// Fails its first two attempts (retryable); records what every attempt was given:
    /// whether the batch came encoded, and its encoding.
    struct EncodedSender {
        attempts: std::sync::Mutex<Vec<(bool, Bytes)>>,
    }

    impl Exporter for EncodedSender {
        fn sends_encoded(&self) -> bool {
            true
        }

        fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            let encoded = matches!(batch.data(), oxcol_core::batch::Data::Encoded(_));
            let mut attempts = self.attempts.lock().unwrap();
            attempts.push((encoded, batch.to_bytes()));
            let result = if attempts.len() <= 2 {
                Err(ExportError::Retryable {
                    reason: "unavailable".into(),
                    after: None,
                })
            } else {
                Ok(ExportOutcome::default())
            };
            Box::pin(async move { result })
        }
    }

    #[tokio::test]
    async fn an_exporter_that_sends_encoded_gets_the_same_bytes_at_every_attempt() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let sender = Arc::new(EncodedSender {
            attempts: std::sync::Mutex::new(Vec::new()),
        });
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            sender.clone(),
            &QueueConfig::default(),
            &fast_retry(),
            None,
            counters.clone(),
        );
        let decoded = batch();
        let expected = decoded.to_bytes();
        assert!(!matches!(
            decoded.data(),
            oxcol_core::batch::Data::Encoded(_)
        ));
        queued.submit(decoded).await.unwrap();
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        let attempts = sender.attempts.lock().unwrap();
        assert_eq!(attempts.len(), 3, "two failures, then success");
        for (encoded, bytes) in attempts.iter() {
            assert!(
                encoded,
                "the queue encodes once for an exporter that sends encoded"
            );
            assert_eq!(bytes, &expected);
        }
        assert_eq!(counters.sent.get(), 3);
    }

    /// Records the item count of every batch it is given.
    #[derive(Default)]
    struct Recorder {
        sizes: std::sync::Mutex<Vec<u64>>,
    }

    impl Exporter for Recorder {
        fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            self.sizes.lock().unwrap().push(batch.items());
            Box::pin(async { Ok(ExportOutcome::default()) })
        }
    }

    #[tokio::test]
    async fn batching_gathers_up_to_size_and_cuts_to_max() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let recorder = Arc::new(Recorder::default());
        let batching = BatchSettings {
            send_batch_size: 9,
            send_batch_max_size: 10,
            timeout: Duration::from_millis(100),
            ..BatchSettings::default()
        };
        let queue = QueueConfig {
            num_consumers: 1,
            ..QueueConfig::default()
        };
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            recorder.clone(),
            &queue,
            &fast_retry(),
            Some(batching),
            counters.clone(),
        );
        // Ten batches of 3 points, queued at once: gathered to >= 9, cut to <= 10.
        for _ in 0..10 {
            queued.submit(batch()).await.unwrap();
        }
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        let sizes = recorder.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<u64>(), 30);
        assert!(sizes.iter().all(|s| *s <= 10), "{sizes:?}");
        assert!(sizes.len() <= 4, "expected gathering, got {sizes:?}");
        assert_eq!(counters.queue_size.get(), 0);
        assert_eq!(counters.sent.get(), 30);
    }

    #[tokio::test]
    async fn batching_sends_a_partial_batch_after_the_timeout() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let recorder = Arc::new(Recorder::default());
        let batching = BatchSettings {
            send_batch_size: 1000,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(50),
            ..BatchSettings::default()
        };
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            recorder.clone(),
            &QueueConfig::default(),
            &fast_retry(),
            Some(batching),
            counters.clone(),
        );
        queued.submit(batch()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            recorder.sizes.lock().unwrap().clone(),
            vec![3],
            "the partial batch was not sent after the timeout"
        );
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
    }

    /// One sent batch: its `x-tenant` values, its metadata keys and its items.
    type TenantBatch = (Vec<String>, Vec<String>, u64);

    /// Records every batch it is given.
    #[derive(Default)]
    struct ByTenant {
        sent: std::sync::Mutex<Vec<TenantBatch>>,
    }

    impl Exporter for ByTenant {
        fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            let (tenant, keys) = match batch.metadata() {
                Some(m) => (
                    m.get("x-tenant").to_vec(),
                    m.keys().map(str::to_string).collect(),
                ),
                None => (Vec::new(), Vec::new()),
            };
            self.sent
                .lock()
                .unwrap()
                .push((tenant, keys, batch.items()));
            Box::pin(async { Ok(ExportOutcome::default()) })
        }
    }

    fn from_tenant(tenant: Option<&str>) -> Batch {
        let mut batch = batch();
        let mut pairs = vec![("authorization", "Bearer secret")];
        pairs.extend(tenant.map(|t| ("X-Tenant", t)));
        batch.set_metadata(Some(Arc::new(Metadata::from_pairs(pairs))));
        batch
    }

    #[tokio::test]
    async fn metadata_keys_batch_per_tenant_and_keep_only_those_keys() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let recorder = Arc::new(ByTenant::default());
        let batching = BatchSettings {
            send_batch_size: 1000,
            timeout: Duration::from_millis(100),
            metadata_keys: vec!["X-Tenant".into()],
            metadata_cardinality_limit: 3,
            ..BatchSettings::default()
        };
        let queue = QueueConfig {
            num_consumers: 1,
            ..QueueConfig::default()
        };
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            recorder.clone(),
            &queue,
            &fast_retry(),
            Some(batching),
            counters.clone(),
        );
        // Interleaved: a, b, none, a, b, none, ...
        for _ in 0..4 {
            for tenant in [Some("a"), Some("b"), None] {
                queued.submit(from_tenant(tenant)).await.unwrap();
            }
        }
        // A fourth combination is over the limit of 3 (none counts as one).
        let refused = queued.submit(from_tenant(Some("c"))).await.unwrap_err();
        assert!(
            matches!(&refused, Refusal::Invalid { reason } if reason.contains("too many batcher metadata-value combinations")),
            "{refused:?}"
        );
        assert!(!refused.reason().contains("Bearer"), "{refused:?}");
        // Known combinations are still taken.
        queued.submit(from_tenant(Some("a"))).await.unwrap();
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        let sent = recorder.sent.lock().unwrap().clone();
        let total = |tenant: &[&str]| -> u64 {
            sent.iter()
                .filter(|(t, _, _)| t.iter().map(String::as_str).eq(tenant.iter().copied()))
                .map(|(_, _, items)| items)
                .sum()
        };
        assert_eq!(
            (total(&["a"]), total(&["b"]), total(&[])),
            (15, 12, 12),
            "{sent:?}"
        );
        for (tenant, keys, _) in &sent {
            let expected: &[&str] = if tenant.is_empty() {
                &[]
            } else {
                &["x-tenant"]
            };
            assert!(
                keys.iter().map(String::as_str).eq(expected.iter().copied()),
                "{sent:?}"
            );
        }
        // Queued together, each tenant's data is one batch (the late `a` may be a second).
        assert!(sent.len() <= 4, "{sent:?}");
        assert_eq!(counters.sent.get(), 39);
        assert_eq!(counters.queue_size.get(), 0);
    }

    #[tokio::test]
    async fn without_metadata_keys_merged_tenants_carry_no_metadata() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let recorder = Arc::new(ByTenant::default());
        let batching = BatchSettings {
            send_batch_size: 6,
            timeout: Duration::from_millis(100),
            ..BatchSettings::default()
        };
        let queue = QueueConfig {
            num_consumers: 1,
            ..QueueConfig::default()
        };
        let queued = QueuedExporter::start(
            "otlp",
            Signal::Metrics,
            recorder.clone(),
            &queue,
            &fast_retry(),
            Some(batching),
            counters,
        );
        for tenant in ["a", "b", "a", "a"] {
            queued.submit(from_tenant(Some(tenant))).await.unwrap();
        }
        queued
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        let sent = recorder.sent.lock().unwrap().clone();
        assert_eq!(
            sent,
            vec![
                (vec![], vec![], 6),
                (
                    vec!["a".to_string()],
                    vec!["authorization".to_string(), "x-tenant".to_string()],
                    6
                )
            ],
            "a then b merged: no metadata; a then a: a's, whole"
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&future).unwrap();
        assert!(
            parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120),
            "{parsed:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn sending_queue_batch_maps_onto_the_queue_grouping() {
        let parse = |json: serde_json::Value| -> QueueConfig {
            serde_json::from_value(json).expect("a sending_queue")
        };
        assert_eq!(
            parse(serde_json::json!({})).batching(),
            None,
            "off unless configured"
        );
        // `batch:` with no value: the Collector's defaults (200ms, items, min 8192, no max).
        let defaults = parse(serde_json::json!({"batch": null}));
        assert!(defaults.validate().is_empty(), "{:?}", defaults.validate());
        assert_eq!(
            defaults.batching(),
            Some(BatchSettings {
                send_batch_size: 8192,
                send_batch_max_size: 0,
                timeout: Duration::from_millis(200),
                ..BatchSettings::default()
            })
        );
        let set = parse(
            serde_json::json!({"queue_size": 50000, "sizer": "items", "batch": {"flush_timeout": "1s", "min_size": 1000, "max_size": 5000}}),
        );
        assert!(set.validate().is_empty(), "{:?}", set.validate());
        assert_eq!(
            set.batching(),
            Some(BatchSettings {
                send_batch_size: 1000,
                send_batch_max_size: 5000,
                timeout: Duration::from_secs(1),
                ..BatchSettings::default()
            })
        );
        let bad = parse(
            serde_json::json!({"sizer": "items", "queue_size": 100, "batch": {"sizer": "bytes", "min_size": 200, "max_size": 10, "flush_timeout": "0s"}}),
        );
        let errors = bad.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let partitioned =
            parse(serde_json::json!({"batch": {"partition": {"metadata_keys": ["X-Tenant"]}}}));
        assert!(
            partitioned.validate().is_empty(),
            "{:?}",
            partitioned.validate()
        );
        assert_eq!(
            partitioned.batching().map(|b| b.metadata_keys),
            Some(vec!["x-tenant".to_string()])
        );
        let twice =
            parse(serde_json::json!({"batch": {"partition": {"metadata_keys": ["a", "A"]}}}));
        assert!(twice.validate()[0].contains("duplicate entry"));
        let too_big = parse(
            serde_json::json!({"sizer": "items", "queue_size": 100, "batch": {"min_size": 200}}),
        );
        assert!(
            too_big.validate()[0].contains("less than or equal to queue_size"),
            "{:?}",
            too_big.validate()
        );
        assert!(
            parse(serde_json::json!({"block_on_overflow": true})).blocking,
            "block_on_overflow is blocking's newer name"
        );
    }
}
