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
//! Stopping: when `stop` is cancelled the input is closed, what is already in it is
//! processed and placed, and the task ends. Nothing accepted into the channel is dropped.
//! Processors get `shutdown()` once the input is drained (stateful ones write their final
//! checkpoint), and `tick()` every `tick_interval()` while running.

use std::sync::Arc;

use oxcol_core::telemetry::ProcessorCounters;
use oxcol_core::{Batch, Envelope, Processor, Refusal};
use oxcol_exporters::queue::QueuedExporter;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
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
    pub exporters: Vec<Arc<QueuedExporter>>,
}

impl Pipeline {
    pub async fn run(mut self, stop: CancellationToken) {
        // Deliveries (placing processed batches in the exporter queues) run concurrently,
        // up to MAX_DELIVERIES: with a disk queue each placement waits for an fsync, and
        // concurrent placements share one (group commit). Processors still run one batch
        // at a time, in arrival order.
        let mut deliveries = FuturesUnordered::new();
        let mut stopping = false;
        // Processors that asked for a timer (checkpoints) are ticked between batches.
        let tick_every = self.processors.iter().filter_map(|s| s.processor.tick_interval()).min();
        let mut ticker = tokio::time::interval(tick_every.unwrap_or(std::time::Duration::from_secs(3600)));
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
        for stage in &mut self.processors {
            stage.processor.shutdown();
        }
        while deliveries.next().await.is_some() {}
        tracing::debug!(pipeline = %self.id, "pipeline stopped");
    }

    /// Runs the processors; returns the delivery to run, or answers a refusal at once.
    fn process(&mut self, envelope: Envelope) -> Option<BoxFuture<'static, ()>> {
        let Envelope { mut batch, ack } = envelope;
        for stage in &mut self.processors {
            match stage.run(batch) {
                Ok(out) => batch = out,
                Err(refusal) => {
                    let _ = ack.send(Err(refusal));
                    return None;
                }
            }
        }
        let exporters = self.exporters.clone();
        Some(Box::pin(async move {
            let _ = ack.send(deliver(&exporters, batch).await);
        }))
    }
}

/// Deliveries in flight per pipeline.
const MAX_DELIVERIES: usize = 64;

/// Places the batch in every exporter queue.
async fn deliver(exporters: &[Arc<QueuedExporter>], batch: Batch) -> Result<(), Refusal> {
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
