//! One running pipeline: a task that takes batches from its bounded input channel, runs
//! the processors in order (synchronously, state in the processors), and fans each result
//! out to every exporter queue. Only then is the receiver's acknowledgement answered, with
//! the first refusal if any queue refused. (The `batch` processor's grouping happens in
//! the exporter queues as data is taken out; see `oxcol_processors::batch`.)
//!
//! Stopping: when `stop` is cancelled the input is closed, what is already in it is
//! processed, and the task ends. Nothing accepted into the channel is dropped.

use std::sync::Arc;

use oxcol_core::telemetry::ProcessorCounters;
use oxcol_core::{Batch, Envelope, Processor, Refusal};
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
    pub exporters: Vec<Arc<QueuedExporter>>,
}

impl Pipeline {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled(), if !stopping => {
                    // Receivers are already stopped; take what is left in the channel.
                    stopping = true;
                    self.input.close();
                }
                envelope = self.input.recv() => match envelope {
                    Some(envelope) => self.handle(envelope).await,
                    None => break,
                },
            }
        }
        tracing::debug!(pipeline = %self.id, "pipeline stopped");
    }

    async fn handle(&mut self, envelope: Envelope) {
        let Envelope { mut batch, ack } = envelope;
        for stage in &mut self.processors {
            match stage.run(batch) {
                Ok(out) => batch = out,
                Err(refusal) => {
                    let _ = ack.send(Err(refusal));
                    return;
                }
            }
        }
        let _ = ack.send(deliver(&self.exporters, batch).await);
    }

}

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
