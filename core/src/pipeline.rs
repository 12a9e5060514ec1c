//! The contracts between components: how a receiver hands a batch to its pipelines and
//! learns whether it was accepted, how a processor transforms a batch, and how an
//! exporter reports the outcome of a send.
//!
//! Delivery rule (DESIGN.md, "Delivery contract"): a receiver answers its client with
//! success only after every pipeline it feeds has placed the batch in every exporter
//! queue. A refusal is retryable (`Overloaded`, `Unavailable`) or final (`Invalid`), and
//! receivers map it to the protocol's status codes.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::batch::Batch;
use crate::signal::Signal;

/// Why a batch was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Queues full or memory limit reached: the client should retry later.
    Overloaded {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The pipeline is stopping or not running: retry elsewhere or later.
    Unavailable { reason: String },
    /// The data itself is bad: never retry.
    Invalid { reason: String },
}

impl Refusal {
    pub fn overloaded(reason: impl Into<String>) -> Refusal {
        Refusal::Overloaded {
            reason: reason.into(),
            retry_after: Some(Duration::from_secs(1)),
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Overloaded { reason, .. }
            | Refusal::Unavailable { reason }
            | Refusal::Invalid { reason } => reason,
        }
    }
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Refusal::Invalid { .. })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The answer a pipeline gives for one batch.
pub type Ack = oneshot::Sender<Result<(), Refusal>>;

/// A batch on its way into a pipeline, with the channel its answer goes back on.
#[derive(Debug)]
pub struct Envelope {
    pub batch: Batch,
    pub ack: Ack,
}

/// Checked by receivers before they read a request body, so data is refused before it is
/// buffered (the memory_limiter processor provides one).
pub trait Admission: Send + Sync + std::fmt::Debug {
    fn admit(&self) -> Result<(), Refusal>;
}

/// The input of one pipeline.
#[derive(Clone, Debug)]
pub struct PipelineInput {
    pub pipeline: String,
    pub sender: mpsc::Sender<Envelope>,
    pub admissions: Vec<Arc<dyn Admission>>,
}

/// Every pipeline a receiver feeds, by signal. A receiver that feeds several pipelines of
/// one signal gets success only when all of them accepted the batch.
///
/// Clones share one set of pipelines, which a config reload can swap under a running
/// receiver ([`Consumers::pause`], then [`Consumers::resume_with`]): while paused,
/// `consume` waits (up to [`RELOAD_WAIT`]) for the new pipelines instead of refusing.
#[derive(Clone, Debug, Default)]
pub struct Consumers {
    shared: Arc<SharedInputs>,
}

/// How long `consume` waits for a reload to hand it the new pipelines before refusing
/// with a retryable `Unavailable`.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct SharedInputs {
    inputs: std::sync::RwLock<Arc<Vec<(Signal, PipelineInput)>>>,
    paused: std::sync::atomic::AtomicBool,
    resumed: tokio::sync::Notify,
}

impl Consumers {
    pub fn new() -> Self {
        Self::default()
    }

    fn inputs(&self) -> Arc<Vec<(Signal, PipelineInput)>> {
        Arc::clone(&self.shared.inputs.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn add(&mut self, signal: Signal, input: PipelineInput) {
        let mut inputs = self
            .shared
            .inputs
            .write()
            .unwrap_or_else(|p| p.into_inner());
        Arc::make_mut(&mut inputs).push((signal, input));
    }

    /// Whether any pipeline takes this signal (a receiver answers "unimplemented" or 404
    /// for a signal no pipeline uses).
    pub fn accepts(&self, signal: Signal) -> bool {
        self.inputs().iter().any(|(s, _)| *s == signal)
    }

    pub fn signals(&self) -> Vec<Signal> {
        let mut signals: Vec<Signal> = self.inputs().iter().map(|(s, _)| *s).collect();
        signals.sort();
        signals.dedup();
        signals
    }

    /// Asks every admission check of the pipelines for `signal`; call before buffering.
    pub fn admit(&self, signal: Signal) -> Result<(), Refusal> {
        for (_, input) in self.inputs().iter().filter(|(s, _)| *s == signal) {
            for admission in &input.admissions {
                admission.admit()?;
            }
        }
        Ok(())
    }

    /// Reload: new batches wait until [`Consumers::resume_with`]; batches already handed
    /// to the old pipelines finish there.
    pub fn pause(&self) {
        self.shared
            .paused
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Reload: from now on, batches go to the pipelines of `next` (the waiting ones too).
    pub fn resume_with(&self, next: &Consumers) {
        let inputs = next.inputs();
        *self
            .shared
            .inputs
            .write()
            .unwrap_or_else(|p| p.into_inner()) = inputs;
        self.shared
            .paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared.resumed.notify_waiters();
    }

    /// The current pipelines, after waiting out a reload (bounded).
    async fn current(&self) -> Result<Arc<Vec<(Signal, PipelineInput)>>, Refusal> {
        let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
        loop {
            let resumed = self.shared.resumed.notified();
            if !self.shared.paused.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(self.inputs());
            }
            if tokio::time::timeout_at(deadline, resumed).await.is_err() {
                return Err(Refusal::Unavailable {
                    reason: "the configuration is being reloaded".to_string(),
                });
            }
        }
    }

    /// Hands `batch` to every pipeline of its signal and waits for all of their answers.
    pub async fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let inputs = self.current().await?;
        let targets: Vec<&PipelineInput> = inputs
            .iter()
            .filter(|(s, _)| *s == signal)
            .map(|(_, i)| i)
            .collect();
        let Some((last, rest)) = targets.split_last() else {
            return Err(Refusal::Unavailable {
                reason: format!("no pipeline accepts {signal}"),
            });
        };
        if rest.is_empty() {
            return send_one(last, batch).await;
        }
        let mut waits = Vec::with_capacity(targets.len());
        for input in rest {
            waits.push(send_one(input, batch.clone()));
        }
        waits.push(send_one(last, batch));
        let results = futures::future::join_all(waits).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, Refusal>>()
            .map(|_| ())
    }
}

async fn send_one(input: &PipelineInput, batch: Batch) -> Result<(), Refusal> {
    let (ack, answer) = oneshot::channel();
    input
        .sender
        .send(Envelope { batch, ack })
        .await
        .map_err(|_| Refusal::Unavailable {
            reason: format!("pipeline {} is not running", input.pipeline),
        })?;
    answer.await.unwrap_or_else(|_| {
        Err(Refusal::Unavailable {
            reason: format!("pipeline {} stopped before answering", input.pipeline),
        })
    })
}

/// A synchronous transformation inside a pipeline. State lives in the processor.
pub trait Processor: Send {
    /// Transforms the batch, or refuses it. Refusals go back to the receiver.
    fn process(&mut self, batch: Batch) -> Result<Batch, Refusal>;

    /// How often (wall clock) the pipeline calls `tick` between batches; None (the
    /// default): never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Called about every `tick_interval`, between batches (stateful processors
    /// checkpoint their state here).
    fn tick(&mut self) {}

    /// Called once when the pipeline stops, after its input was drained and processed.
    fn shutdown(&mut self) {}

    /// Data the processor releases on its own rather than as the answer to an input
    /// batch: spans held until a tail-sampling decision, aggregates flushed on an
    /// interval. The pipeline asks after every `tick` and once more after `shutdown`;
    /// what comes back runs through the processors after this one and is delivered to the
    /// exporters like any batch. No receiver waits for its answer: a processor that holds
    /// data has taken responsibility for it when it answered the input batch.
    fn take_pending(&mut self) -> Vec<Batch> {
        Vec::new()
    }
}

/// The result of a successful send: the backend may still have rejected part of it
/// (OTLP partial success), which must not be retried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    pub rejected: u64,
    pub message: String,
}

/// A failed send, classified once by the exporter that knows its protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("{reason} (retryable)")]
    Retryable {
        reason: String,
        after: Option<Duration>,
    },
    #[error("{reason} (permanent, not retried)")]
    Permanent { reason: String },
}

/// Sends batches to one destination. Queueing and retry wrap it (see the exporters crate);
/// an implementation makes exactly one attempt per call.
pub trait Exporter: Send + Sync + 'static {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>>;

    /// True when this exporter sends the batch as the encoded OTLP request as it is
    /// (OTLP/gRPC, OTLP/HTTP with protobuf). The sending queue then encodes a decoded batch
    /// once, before the first attempt: each attempt gets a clone of the same bytes instead
    /// of a deep copy of the decoded tree (a copy, and a free, of every string and point).
    fn sends_encoded(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    fn input(name: &str) -> (PipelineInput, mpsc::Receiver<Envelope>) {
        let (sender, receiver) = mpsc::channel(4);
        (
            PipelineInput {
                pipeline: name.to_string(),
                sender,
                admissions: Vec::new(),
            },
            receiver,
        )
    }

    /// Answers every batch with success; returns how many it saw.
    fn answer_all(mut receiver: mpsc::Receiver<Envelope>) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let mut seen = 0;
            while let Some(envelope) = receiver.recv().await {
                seen += 1;
                let _ = envelope.ack.send(Ok(()));
            }
            seen
        })
    }

    #[tokio::test]
    async fn a_paused_receiver_waits_and_then_feeds_the_new_pipelines() {
        let (old_input, old_receiver) = input("old");
        let mut consumers = Consumers::new();
        consumers.add(Signal::Metrics, old_input);
        // What the receiver holds: a clone, sharing the pipelines with the service's handle.
        let held = consumers.clone();
        let old = answer_all(old_receiver);
        held.consume(Batch::empty(Signal::Metrics))
            .await
            .expect("the old pipeline accepts");
        consumers.pause();
        let waiting = tokio::spawn({
            let held = held.clone();
            async move { held.consume(Batch::empty(Signal::Metrics)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a batch during a reload waits for the new pipelines"
        );
        let (new_input, new_receiver) = input("new");
        let mut next = Consumers::new();
        next.add(Signal::Metrics, new_input);
        consumers.resume_with(&next);
        let new = answer_all(new_receiver);
        waiting
            .await
            .expect("joins")
            .expect("the new pipeline accepts");
        // The old pipeline's input is no longer referenced: it ends with just the first batch.
        drop((consumers, held, next));
        assert_eq!(old.await.expect("joins"), 1);
        assert_eq!(new.await.expect("joins"), 1);
    }
}
