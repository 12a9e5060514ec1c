//! `kafka` receiver: consumes OTLP messages (protobuf or JSON `Export*ServiceRequest`s)
//! from Kafka topics in a consumer group and hands them to the pipelines.
//!
//! At-least-once, by default: a message's offset is stored for commit only after every
//! pipeline of its signal accepted it (`message_marking.after: true`). A retryable refusal
//! (queue full, memory limit, reload) holds the same message and offers it again after a
//! growing pause (100ms to 5s), so nothing behind it in the partition is consumed and
//! nothing is skipped. A message that cannot be decoded is counted
//! (`otelcol_kafka_receiver_unmarshal_failed_*`), logged once with its topic, partition
//! and offset, and skipped. When a gateway dies, its uncommitted messages are consumed
//! again by the group member that takes its partitions (duplicates, never gaps).
//!
//! One consumer (one group member) per signal, as in the Collector. It must never panic
//! on a message and never commit an offset the pipeline did not accept (unless
//! `message_marking` says so).

mod config;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use oxcol_core::kafka::Encoding;
use oxcol_core::telemetry::{Counter, ReceiverCounters, Registry};
use oxcol_core::{Consumers, Refusal, Signal};
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use regex::Regex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kafka_message::add_resource_attributes;
pub use crate::kafka_message::decode;
pub use config::{
    AutoCommit, Config, ErrorBackoff, HeaderExtraction, MessageMarking, SignalSource, TopicEncoding,
};

pub const TYPE: &str = "kafka";
pub const ALIASES: &[&str] = &["kafka"];

/// First and longest pause before a refused message is offered again.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Counts partition assignments and revocations (`otelcol_kafka_receiver_partition_*`).
struct GroupContext {
    partition_start: Counter,
    partition_close: Counter,
    id: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.partition_start.add(partitions.count() as u64);
                tracing::info!(receiver = %self.id, partitions = partitions.count(), "kafka partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                self.partition_close.add(partitions.count() as u64);
                tracing::info!(receiver = %self.id, partitions = partitions.count(), "kafka partitions revoked");
            }
            Rebalance::Error(error) => {
                tracing::warn!(receiver = %self.id, %error, "kafka consumer group rebalance failed");
            }
        }
    }
}

/// Starts one consumer per signal that has a pipeline. Fails (naming the receiver) when
/// the consumer cannot be created or subscribed.
pub fn start(
    id: &str,
    config: &Config,
    consumers: Consumers,
    registry: &Arc<Registry>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    for signal in consumers.signals() {
        let source = config
            .source(signal)
            .map_err(|e| format!("receiver {id:?}: {e}"))?;
        let labels = [("name", id)];
        let context = GroupContext {
            partition_start: registry.counter(
                "otelcol_kafka_receiver_partition_start",
                "Number of started partitions.",
                &labels,
            ),
            partition_close: registry.counter(
                "otelcol_kafka_receiver_partition_close",
                "Number of finished partitions.",
                &labels,
            ),
            id: id.to_string(),
        };
        let mut client = rdkafka::ClientConfig::new();
        for (name, value) in config.consumer_properties() {
            client.set(name, value);
        }
        let consumer: StreamConsumer<GroupContext> = client
            .create_with_context(context)
            .map_err(|e| format!("receiver {id:?}: cannot create the Kafka consumer: {e}"))?;
        let topics: Vec<&str> = source.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("receiver {id:?}: cannot subscribe to {topics:?}: {e}"))?;
        let excluded = source
            .exclude_topics
            .iter()
            .map(|pattern| Regex::new(pattern))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("receiver {id:?}: exclude_topics: {e}"))?;
        let worker = Worker {
            id: id.to_string(),
            signal,
            encoding: source.encoding,
            excluded,
            marking: config.message_marking.clone(),
            backoff: config.error_backoff.clone(),
            autocommit: config.autocommit.enable,
            headers: if config.header_extraction.extract_headers {
                config.header_extraction.headers.clone()
            } else {
                Vec::new()
            },
            consumers: consumers.clone(),
            counters: ReceiverCounters::new(registry, id, "kafka", signal),
            registry: Arc::clone(registry),
            per_partition: HashMap::new(),
        };
        tasks.push(tokio::spawn(worker.run(consumer, stop.clone())));
    }
    Ok(tasks)
}

/// The consume loop of one signal.
struct Worker {
    id: String,
    signal: Signal,
    encoding: Encoding,
    excluded: Vec<Regex>,
    marking: MessageMarking,
    backoff: ErrorBackoff,
    autocommit: bool,
    headers: Vec<String>,
    consumers: Consumers,
    counters: ReceiverCounters,
    registry: Arc<Registry>,
    /// (messages, unmarshal failures) counters by (topic, partition).
    per_partition: HashMap<(String, i32), (Counter, Counter)>,
}

/// What became of one message.
enum Outcome {
    /// Accepted, skipped on purpose, or undecodable: its offset may be committed.
    Done,
    /// The receiver is stopping before the pipeline accepted it: not committed.
    Stopped,
}

impl Worker {
    async fn run(mut self, consumer: StreamConsumer<GroupContext>, stop: CancellationToken) {
        let mut last_error_logged: Option<std::time::Instant> = None;
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    // Broker down, rebalance in progress...: librdkafka reconnects on its
                    // own; log at most every 10s.
                    if last_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(receiver = %self.id, %error, "kafka consumer error");
                        last_error_logged = Some(std::time::Instant::now());
                    }
                    continue;
                }
            };
            if !self.marking.after {
                self.mark(&consumer, &message);
            }
            match self.handle(&message, &stop).await {
                Outcome::Done => {
                    if self.marking.after {
                        self.mark(&consumer, &message);
                    }
                }
                Outcome::Stopped => break,
            }
        }
        // Leaving the group commits the stored offsets (autocommit) and blocks for a
        // while: off the async workers.
        let id = self.id.clone();
        let closed = tokio::task::spawn_blocking(move || drop(consumer)).await;
        if closed.is_err() {
            tracing::warn!(receiver = %id, "kafka consumer did not close cleanly");
        }
    }

    /// Stores the message's offset for the next commit (or commits it now without
    /// autocommit).
    fn mark(&self, consumer: &StreamConsumer<GroupContext>, message: &BorrowedMessage<'_>) {
        let result = if self.autocommit {
            consumer.store_offset_from_message(message)
        } else {
            consumer.commit_message(message, CommitMode::Async)
        };
        if let Err(error) = result {
            // The partition was revoked meanwhile: its new owner consumes it again.
            tracing::debug!(receiver = %self.id, %error, topic = message.topic(), partition = message.partition(), offset = message.offset(), "kafka offset not stored");
        }
    }

    fn partition_counters(&mut self, topic: &str, partition: i32) -> &(Counter, Counter) {
        let registry = &self.registry;
        let id = &self.id;
        let item = self.signal.item_name();
        self.per_partition
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                let partition = partition.to_string();
                let labels = [
                    ("name", id.as_str()),
                    ("topic", topic),
                    ("partition", partition.as_str()),
                ];
                (
                    registry.counter(
                        "otelcol_kafka_receiver_messages",
                        "Number of received messages.",
                        &labels,
                    ),
                    registry.counter(
                        &format!("otelcol_kafka_receiver_unmarshal_failed_{item}"),
                        "Number of messages that could not be decoded.",
                        &labels,
                    ),
                )
            })
    }

    async fn handle(&mut self, message: &BorrowedMessage<'_>, stop: &CancellationToken) -> Outcome {
        let topic = message.topic();
        let partition = message.partition();
        let offset = message.offset();
        let (messages, unmarshal_failed) = self.partition_counters(topic, partition).clone();
        messages.add(1);
        if self.excluded.iter().any(|r| r.is_match(topic)) {
            return Outcome::Done;
        }
        let payload = message.payload().unwrap_or_default();
        let mut batch = match decode(self.signal, self.encoding, payload) {
            Ok(batch) => batch,
            Err(reason) => {
                unmarshal_failed.add(1);
                tracing::warn!(receiver = %self.id, topic, partition, offset, %reason, "kafka message cannot be decoded; skipped");
                return Outcome::Done;
            }
        };
        if batch.is_empty() {
            return Outcome::Done;
        }
        if !self.headers.is_empty() {
            let attributes = header_attributes(message, &self.headers);
            if let Err(reason) = add_resource_attributes(&mut batch, &attributes) {
                unmarshal_failed.add(1);
                tracing::warn!(receiver = %self.id, topic, partition, offset, %reason, "kafka message cannot be decoded; skipped");
                return Outcome::Done;
            }
        }
        let items = batch.items();
        let mut pauses = Pauses::new(&self.backoff);
        loop {
            let started = std::time::SystemTime::now();
            let result = self.consumers.consume(batch.clone()).await;
            self.counters.finished(
                started,
                items,
                result.as_ref().err().map(ToString::to_string),
            );
            match result {
                Ok(()) => return Outcome::Done,
                Err(refusal) => {
                    let skip = if !self.marking.after {
                        // Marked before delivery (at-most-once): nothing to hold.
                        true
                    } else if refusal.is_retryable() {
                        // Without error_backoff, on_error skips at once; with it, only
                        // once max_elapsed_time has passed.
                        self.marking.on_error && (!self.backoff.enabled || pauses.expired())
                    } else {
                        self.marking.on_permanent_error
                    };
                    if skip {
                        tracing::warn!(receiver = %self.id, topic, partition, offset, reason = %refusal, "kafka message refused by the pipeline; skipped");
                        return Outcome::Done;
                    }
                    tracing::debug!(receiver = %self.id, topic, partition, offset, reason = %refusal, "kafka message refused; offering it again");
                    let mut wait = pauses.next();
                    if let Refusal::Overloaded {
                        retry_after: Some(after),
                        ..
                    } = &refusal
                    {
                        wait = wait.max((*after).min(LONGEST_RETRY_PAUSE));
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return Outcome::Stopped,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// The pauses between offers of one refused message: `error_backoff` when enabled, else
/// [`FIRST_RETRY_PAUSE`] doubling up to [`LONGEST_RETRY_PAUSE`].
struct Pauses {
    next: Duration,
    multiplier: f64,
    longest: Duration,
    jitter: f64,
    give_up_after: Option<Duration>,
    started: std::time::Instant,
}

impl Pauses {
    fn new(backoff: &ErrorBackoff) -> Pauses {
        let started = std::time::Instant::now();
        if backoff.enabled {
            let max_elapsed = backoff.max_elapsed_time.get();
            Pauses {
                next: backoff.initial_interval.get(),
                multiplier: backoff.multiplier,
                longest: backoff
                    .max_interval
                    .get()
                    .max(backoff.initial_interval.get()),
                jitter: backoff.randomization_factor,
                give_up_after: (!max_elapsed.is_zero()).then_some(max_elapsed),
                started,
            }
        } else {
            Pauses {
                next: FIRST_RETRY_PAUSE,
                multiplier: 2.0,
                longest: LONGEST_RETRY_PAUSE,
                jitter: 0.0,
                give_up_after: None,
                started,
            }
        }
    }

    /// The next pause (with jitter), growing the one after.
    fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = base.mul_f64(self.multiplier).min(self.longest);
        if self.jitter > 0.0 {
            use rand::Rng;
            let scale = rand::rng().random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
            base.mul_f64(scale)
        } else {
            base
        }
    }

    /// Whether `max_elapsed_time` has passed since the first refusal.
    fn expired(&self) -> bool {
        self.give_up_after
            .is_some_and(|limit| self.started.elapsed() >= limit)
    }
}

/// `kafka.header.<name>` attributes of the configured headers present on the message.
fn header_attributes(message: &BorrowedMessage<'_>, wanted: &[String]) -> Vec<KeyValue> {
    let Some(headers) = message.headers() else {
        return Vec::new();
    };
    crate::kafka_message::header_attributes(headers.iter().map(|h| (h.key, h.value)), wanted)
}
