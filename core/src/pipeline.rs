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
    Overloaded { reason: String, retry_after: Option<Duration> },
    /// The pipeline is stopping or not running: retry elsewhere or later.
    Unavailable { reason: String },
    /// The data itself is bad: never retry.
    Invalid { reason: String },
}

impl Refusal {
    pub fn overloaded(reason: impl Into<String>) -> Refusal {
        Refusal::Overloaded { reason: reason.into(), retry_after: Some(Duration::from_secs(1)) }
    }
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Overloaded { reason, .. } | Refusal::Unavailable { reason } | Refusal::Invalid { reason } => reason,
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
#[derive(Clone, Debug, Default)]
pub struct Consumers {
    inputs: Vec<(Signal, PipelineInput)>,
}

impl Consumers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, signal: Signal, input: PipelineInput) {
        self.inputs.push((signal, input));
    }

    /// Whether any pipeline takes this signal (a receiver answers "unimplemented" or 404
    /// for a signal no pipeline uses).
    pub fn accepts(&self, signal: Signal) -> bool {
        self.inputs.iter().any(|(s, _)| *s == signal)
    }

    pub fn signals(&self) -> Vec<Signal> {
        let mut signals: Vec<Signal> = self.inputs.iter().map(|(s, _)| *s).collect();
        signals.sort();
        signals.dedup();
        signals
    }

    /// Asks every admission check of the pipelines for `signal`; call before buffering.
    pub fn admit(&self, signal: Signal) -> Result<(), Refusal> {
        for (_, input) in self.inputs.iter().filter(|(s, _)| *s == signal) {
            for admission in &input.admissions {
                admission.admit()?;
            }
        }
        Ok(())
    }

    /// Hands `batch` to every pipeline of its signal and waits for all of their answers.
    pub async fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let targets: Vec<&PipelineInput> = self.inputs.iter().filter(|(s, _)| *s == signal).map(|(_, i)| i).collect();
        let Some((last, rest)) = targets.split_last() else {
            return Err(Refusal::Unavailable { reason: format!("no pipeline accepts {signal}") });
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
        results.into_iter().collect::<Result<Vec<()>, Refusal>>().map(|_| ())
    }
}

async fn send_one(input: &PipelineInput, batch: Batch) -> Result<(), Refusal> {
    let (ack, answer) = oneshot::channel();
    input
        .sender
        .send(Envelope { batch, ack })
        .await
        .map_err(|_| Refusal::Unavailable { reason: format!("pipeline {} is not running", input.pipeline) })?;
    answer
        .await
        .unwrap_or_else(|_| Err(Refusal::Unavailable { reason: format!("pipeline {} stopped before answering", input.pipeline) }))
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
    Retryable { reason: String, after: Option<Duration> },
    #[error("{reason} (permanent, not retried)")]
    Permanent { reason: String },
}

/// Sends batches to one destination. Queueing and retry wrap it (see the exporters crate);
/// an implementation makes exactly one attempt per call.
pub trait Exporter: Send + Sync + 'static {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>>;
}
