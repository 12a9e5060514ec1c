//! One running pipeline: a task that takes batches from its bounded input channel, runs
//! the processors in order (synchronously, state in the processors), and fans each result
//! out to every exporter queue. Only then is the receiver's acknowledgement answered, with
//! the first refusal if any queue refused. (The `batch` processor's grouping happens in
//! the exporter queues as data is taken out; see `oxcol_processors::batch`.)
//!
//! Processors run one batch at a time in arrival order; placing the results in the
//! exporter queues runs concurrently (up to 64 per pipeline), so disk queues can share
//! one fsync among many placements.
//!
//! A pipeline's `exporters` are destinations: an exporter queue, or a connector
//! ([`ConnectorNode`]). Submitting to a connector runs it and hands what it emits to the
//! downstream pipelines, awaiting their answers, so the acknowledgement rule holds across
//! connectors: a refusal anywhere downstream is a refusal to the upstream receiver.
//!
//! Stopping: when `stop` is cancelled the input is closed, what is already in it is
//! processed and placed, and the task ends. Nothing accepted into the channel is dropped.
//! Processors get `shutdown()` once the input is drained (stateful ones write their final
//! checkpoint), and `tick()` every `tick_interval()` while running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use oxcol_connectors::{Connector, Output};
use oxcol_core::telemetry::{Counter, ProcessorCounters, Registry};
use oxcol_core::{Batch, Consumers, Envelope, Processor, Refusal, Signal};
use oxcol_exporters::queue::QueuedExporter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A processor with its id and counters.
pub struct Stage {
    pub processor: Box<dyn Processor>,
    pub counters: ProcessorCounters,
}

impl Stage {
    fn run(&mut self, batch: Batch) -> Result<Batch, Refusal> {
        let items = batch.items();
        self.counters.incoming.add(items);
        match self.processor.process(batch) {
            Ok(out) => {
                self.counters.outgoing.add(out.items());
                Ok(out)
            }
            Err(refusal) => {
                self.counters.refused.add(items);
                Err(refusal)
            }
        }
    }
}

pub struct Pipeline {
    pub id: String,
    pub input: mpsc::Receiver<Envelope>,
    pub processors: Vec<Stage>,
    pub exporters: Vec<Destination>,
    /// The memory picture's tap: sees each processed batch, by reference, before it is
    /// placed (only when something reads the picture; see `crate::picture`).
    pub tap: Option<crate::picture::PictureHandle>,
}

impl Pipeline {
    /// Runs until stopped; returns the processors (a reload may carry their state over).
    /// The processors whose index is in `carried` when the pipeline stops get no
    /// `shutdown()`: they go on, with their state, in the next pipeline.
    pub async fn run(
        mut self,
        stop: CancellationToken,
        carried: Arc<Mutex<std::collections::HashSet<usize>>>,
    ) -> Vec<Stage> {
        // Deliveries (placing processed batches in the exporter queues) run concurrently,
        // up to MAX_DELIVERIES: with a disk queue each placement waits for an fsync, and
        // concurrent placements share one (group commit). Processors still run one batch
        // at a time, in arrival order.
        let mut deliveries = FuturesUnordered::new();
        let mut stopping = false;
        // Processors that asked for a timer (checkpoints) are ticked between batches.
        let tick_every = self
            .processors
            .iter()
            .filter_map(|s| s.processor.tick_interval())
            .min();
        let mut ticker =
            tokio::time::interval(tick_every.unwrap_or(std::time::Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled(), if !stopping => {
                    // Receivers are already stopped; take what is left in the channel.
                    stopping = true;
                    self.input.close();
                }
                Some(()) = deliveries.next(), if !deliveries.is_empty() => {}
                _ = ticker.tick(), if tick_every.is_some() => {
                    for stage in &mut self.processors {
                        stage.processor.tick();
                    }
                    deliveries.extend(self.release_pending());
                }
                envelope = self.input.recv(), if deliveries.len() < MAX_DELIVERIES => match envelope {
                    Some(envelope) => {
                        if let Some(delivery) = self.process(envelope) {
                            deliveries.push(delivery);
                        }
                    }
                    None => break,
                },
            }
        }
        // Everything accepted was processed: processors write their final state.
        let carried = carried
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        for (index, stage) in self.processors.iter_mut().enumerate() {
            if !carried.contains(&index) {
                stage.processor.shutdown();
            }
        }
        deliveries.extend(self.release_pending());
        while deliveries.next().await.is_some() {}
        tracing::debug!(pipeline = %self.id, "pipeline stopped");
        std::mem::take(&mut self.processors)
    }

    /// Runs the processors; returns the delivery to run, or answers a refusal at once.
    fn process(&mut self, envelope: Envelope) -> Option<BoxFuture<'static, ()>> {
        let Envelope { batch, ack } = envelope;
        match self.run_from(0, batch) {
            Ok(batch) => {
                if let Some(tap) = &self.tap {
                    tap.observe(&batch);
                }
                let exporters = self.exporters.clone();
                Some(Box::pin(async move {
                    let _ = ack.send(deliver(&exporters, batch).await);
                }))
            }
            Err(refusal) => {
                let _ = ack.send(Err(refusal));
                None
            }
        }
    }

    /// Runs the processors from index `first` on.
    fn run_from(&mut self, first: usize, mut batch: Batch) -> Result<Batch, Refusal> {
        for stage in &mut self.processors[first..] {
            batch = stage.run(batch)?;
        }
        Ok(batch)
    }

    /// What processors released on their own (`Processor::take_pending`), run through the
    /// processors after the one that released it, as deliveries nobody waits on.
    fn release_pending(&mut self) -> Vec<BoxFuture<'static, ()>> {
        let mut out: Vec<BoxFuture<'static, ()>> = Vec::new();
        for index in 0..self.processors.len() {
            for batch in self.processors[index].processor.take_pending() {
                self.processors[index].counters.outgoing.add(batch.items());
                match self.run_from(index + 1, batch) {
                    Ok(batch) => {
                        if let Some(tap) = &self.tap {
                            tap.observe(&batch);
                        }
                        let exporters = self.exporters.clone();
                        let pipeline = self.id.clone();
                        out.push(Box::pin(async move {
                            if let Err(refusal) = deliver(&exporters, batch).await {
                                tracing::warn!(%pipeline, %refusal, "data released by a processor was refused by an exporter queue");
                            }
                        }));
                    }
                    Err(refusal) => {
                        tracing::warn!(pipeline = %self.id, %refusal, "data released by a processor was refused by a later processor")
                    }
                }
            }
        }
        out
    }
}

/// Deliveries in flight per pipeline.
const MAX_DELIVERIES: usize = 64;

/// Places the batch in every exporter queue (and runs every connector).
async fn deliver(exporters: &[Destination], batch: Batch) -> Result<(), Refusal> {
    if batch.is_empty() {
        return Ok(());
    }
    if let [only] = exporters {
        return only.submit(batch).await;
    }
    let mut result = Ok(());
    for exporter in exporters {
        if let Err(refusal) = exporter.submit(batch.clone()).await {
            result = Err(refusal);
        }
    }
    result
}

/// Where a pipeline's `exporters` entry sends: an exporter queue or a connector.
#[derive(Clone)]
pub enum Destination {
    Queue(Arc<QueuedExporter>),
    Connector(Arc<ConnectorNode>),
}

impl Destination {
    async fn submit(&self, batch: Batch) -> Result<(), Refusal> {
        match self {
            Destination::Queue(queue) => queue.submit(batch).await,
            Destination::Connector(node) => node.submit(batch).await,
        }
    }
}

/// The connector's self-telemetry, under the Collector's pipeline-component names
/// (`otelcol.connector.consumed.items` / `.produced.items`, with its attribute names).
struct ConnectorCounters {
    consumed: [Counter; 3],
    /// Per downstream pipeline: success, failure, refused.
    produced: Vec<[Counter; 3]>,
}

const OUTCOMES: [&str; 3] = ["success", "failure", "refused"];

fn outcome(result: &Result<(), Refusal>) -> usize {
    match result {
        Ok(()) => 0,
        Err(Refusal::Invalid { .. }) => 1,
        Err(_) => 2,
    }
}

/// One running connector: an id and one (from-signal, to-signal) pair, as the Collector
/// builds them, with the inputs of the pipelines it feeds.
pub struct ConnectorNode {
    pub id: String,
    /// Held only while the connector runs (never across an await).
    connector: Mutex<Box<dyn Connector>>,
    tick_interval: Option<Duration>,
    downstream: Vec<(String, Consumers)>,
    counters: ConnectorCounters,
}

impl ConnectorNode {
    /// `downstream`: (pipeline id, its input) for every pipeline of `to` that names the
    /// connector in `receivers`.
    pub fn new(
        id: &str,
        from: Signal,
        to: Signal,
        connector: Box<dyn Connector>,
        downstream: Vec<(String, Consumers)>,
        registry: &Registry,
    ) -> ConnectorNode {
        let labels = |outcome: &'static str| {
            [
                ("otelcol_component_kind", "connector"),
                ("otelcol_component_id", id),
                ("otelcol_signal", from.name()),
                ("otelcol_signal_output", to.name()),
                ("otelcol_component_outcome", outcome),
            ]
        };
        let consumed = OUTCOMES.map(|o| {
            registry.counter(
                "otelcol_connector_consumed_items",
                "Number of items passed to the connector.",
                &labels(o),
            )
        });
        let produced = downstream
            .iter()
            .map(|(pipeline, _)| {
                OUTCOMES.map(|o| {
                    let mut l = labels(o).to_vec();
                    l.push(("otelcol_pipeline_id", pipeline));
                    registry.counter(
                        "otelcol_connector_produced_items",
                        "Number of items emitted from the connector.",
                        &l,
                    )
                })
            })
            .collect();
        let tick_interval = connector.tick_interval();
        ConnectorNode {
            id: id.to_string(),
            connector: Mutex::new(connector),
            tick_interval,
            downstream,
            counters: ConnectorCounters { consumed, produced },
        }
    }

    fn connector(&self) -> std::sync::MutexGuard<'_, Box<dyn Connector>> {
        // A poisoned lock means a connector panicked mid-batch: its state is still usable
        // (each batch is applied whole or not at all is not guaranteed, but bounded).
        self.connector
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the connector on a batch from an upstream pipeline and delivers what it emits;
    /// success only if every downstream pipeline accepted it.
    pub async fn submit(&self, batch: Batch) -> Result<(), Refusal> {
        let items = batch.items();
        let outputs = self.connector().consume(batch, SystemTime::now());
        let result = match outputs {
            Ok(outputs) => self.deliver(outputs).await,
            // The refusal keeps its kind (the client's gRPC code): a routing condition
            // that fails with error_mode propagate is "unavailable", as in the Collector.
            Err(refusal) => Err(with_reason(refusal, format!("connector {:?}: ", self.id))),
        };
        self.counters.consumed[outcome(&result)].add(items);
        result
    }

    /// Hands each output to its downstream pipelines (all of them concurrently) and waits.
    async fn deliver(&self, outputs: Vec<Output>) -> Result<(), Refusal> {
        let mut result = Ok(());
        for output in outputs {
            if output.batch.is_empty() {
                continue;
            }
            let items = output.batch.items();
            let targets: Vec<usize> = (0..self.downstream.len())
                .filter(|i| {
                    output
                        .pipelines
                        .as_ref()
                        .is_none_or(|names| names.contains(&self.downstream[*i].0))
                })
                .collect();
            let answers = futures::future::join_all(
                targets
                    .iter()
                    .map(|i| self.downstream[*i].1.consume(output.batch.clone())),
            )
            .await;
            for (index, answer) in targets.into_iter().zip(answers) {
                self.counters.produced[index][outcome(&answer)].add(items);
                if let Err(refusal) = answer {
                    result = Err(refusal);
                }
            }
        }
        result
    }

    pub fn tick_interval(&self) -> Option<Duration> {
        self.tick_interval
    }

    /// Releases what the connector emits on its timer (no receiver waits for it: the
    /// upstream data was acknowledged when it was aggregated).
    pub async fn tick(&self) {
        let outputs = self.connector().tick(SystemTime::now());
        if let Err(refusal) = self.deliver(outputs).await {
            tracing::warn!(connector = %self.id, %refusal, "metrics emitted by the connector were refused downstream");
        }
    }

    /// The final flush, once the upstream pipelines have stopped.
    pub async fn shutdown(&self) {
        let outputs = self.connector().shutdown(SystemTime::now());
        if let Err(refusal) = self.deliver(outputs).await {
            tracing::warn!(connector = %self.id, %refusal, "the connector's final flush was refused downstream");
        }
    }
}

/// `refusal` with `prefix` put before its reason, its kind (and retry hint) unchanged.
fn with_reason(refusal: Refusal, prefix: String) -> Refusal {
    match refusal {
        Refusal::Overloaded {
            reason,
            retry_after,
        } => Refusal::Overloaded {
            reason: prefix + &reason,
            retry_after,
        },
        Refusal::Unavailable { reason } => Refusal::Unavailable {
            reason: prefix + &reason,
        },
        Refusal::Invalid { reason } => Refusal::Invalid {
            reason: prefix + &reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connector_refusal_keeps_its_kind() {
        let unavailable = with_reason(
            Refusal::Unavailable {
                reason: "condition failed".into(),
            },
            "connector \"routing\": ".into(),
        );
        assert_eq!(
            unavailable,
            Refusal::Unavailable {
                reason: "connector \"routing\": condition failed".into()
            }
        );
        let invalid = with_reason(
            Refusal::Invalid {
                reason: "bad".into(),
            },
            "c: ".into(),
        );
        assert!(matches!(invalid, Refusal::Invalid { reason } if reason == "c: bad"));
    }
    use oxcol_connectors::forward::ForwardConnector;
    use oxcol_core::PipelineInput;
    use tokio::sync::mpsc;

    /// A downstream pipeline stand-in that answers every batch with `answer` and reports
    /// the items it saw.
    fn fake_pipeline(
        name: &str,
        answer: Result<(), Refusal>,
    ) -> (Consumers, mpsc::UnboundedReceiver<u64>) {
        let (sender, mut input) = mpsc::channel::<Envelope>(4);
        let (seen, items) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(envelope) = input.recv().await {
                let _ = seen.send(envelope.batch.items());
                let _ = envelope.ack.send(answer.clone());
            }
        });
        let mut consumers = Consumers::new();
        consumers.add(
            Signal::Logs,
            PipelineInput {
                pipeline: name.to_string(),
                sender,
                admissions: Vec::new(),
            },
        );
        (consumers, items)
    }

    fn logs(records: usize) -> Batch {
        Batch::from_logs(oxcol_core::testdata::logs_request(1, records).resource_logs)
    }

    #[tokio::test]
    async fn a_refusal_downstream_is_the_answer_upstream() {
        let registry = Registry::new();
        let (ok, mut ok_seen) = fake_pipeline("logs/ok", Ok(()));
        let (full, mut full_seen) =
            fake_pipeline("logs/full", Err(Refusal::overloaded("queue full")));
        let node = ConnectorNode::new(
            "forward",
            Signal::Logs,
            Signal::Logs,
            Box::new(ForwardConnector),
            vec![("logs/ok".into(), ok), ("logs/full".into(), full)],
            &registry,
        );
        let answer = node.submit(logs(3)).await;
        assert!(
            matches!(answer, Err(Refusal::Overloaded { .. })),
            "{answer:?}"
        );
        assert_eq!(
            ok_seen.recv().await,
            Some(3),
            "every downstream pipeline got the batch"
        );
        assert_eq!(full_seen.recv().await, Some(3));
        let text = registry.render_prometheus();
        assert!(text.contains("otelcol_connector_consumed_items{otelcol_component_kind=\"connector\",otelcol_component_id=\"forward\",otelcol_signal=\"logs\",otelcol_signal_output=\"logs\",otelcol_component_outcome=\"refused\"} 3"), "{text}");
        assert!(
            text.contains(
                "otelcol_component_outcome=\"success\",otelcol_pipeline_id=\"logs/ok\"} 3"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn outputs_for_named_pipelines_reach_only_those() {
        struct ToOne;
        impl Connector for ToOne {
            fn consume(&mut self, batch: Batch, _now: SystemTime) -> Result<Vec<Output>, Refusal> {
                Ok(vec![Output {
                    pipelines: Some(vec!["logs/b".into()]),
                    batch,
                }])
            }
        }
        let (a, mut a_seen) = fake_pipeline("logs/a", Ok(()));
        let (b, mut b_seen) = fake_pipeline("logs/b", Ok(()));
        let node = ConnectorNode::new(
            "routing",
            Signal::Logs,
            Signal::Logs,
            Box::new(ToOne),
            vec![("logs/a".into(), a), ("logs/b".into(), b)],
            &Registry::new(),
        );
        assert_eq!(node.submit(logs(2)).await, Ok(()));
        assert_eq!(b_seen.recv().await, Some(2));
        assert!(a_seen.try_recv().is_err(), "logs/a got nothing");
    }
}
