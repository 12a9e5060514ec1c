//! `tail_sampling`: keeps or drops whole traces by policy, the Collector's
//! `tailsamplingprocessor` with its config, decision rules and self-telemetry names.
//!
//! Spans are grouped by trace ID and held. Once a trace is `decision_wait` old (on the
//! processor's clock, checked at every `tick`), every policy evaluates it and the
//! Collector's rules combine their answers: a `drop` policy's Dropped wins, then any
//! Sampled; otherwise the trace is not sampled. (In v0.161 `invert_match` policies answer
//! plain Sampled/NotSampled; the Collector's deprecated Invert* decisions are no longer
//! produced by any policy, so oxcol does not have them.) A sampled trace's spans are
//! released through `take_pending`, in one piece. Spans that arrive after the decision
//! follow it: while the trace is still remembered (in memory, or in a `decision_cache`)
//! they pass at once when it was sampled and are dropped when it was not.
//!
//! Memory is bounded by `num_traces`: a new trace beyond it pushes out the oldest trace
//! held, decided or not; an undecided one loses its spans and is counted in
//! `otelcol_processor_tail_sampling_sampling_trace_dropped_too_early`.
//!
//! Not yet here from v0.161 (listed in docs/components/tail_sampling.md, "Not done"): the
//! `trace_flags` and `bytes_limiting` policies, policy extensions, the keys
//! `decision_wait_after_root_received`, `maximum_trace_size_bytes`, `block_on_overflow`,
//! `sampling_strategy`, `num_shards`, `tail_storage`, and the alpha feature gates.
//!
//! This module must never read the wall clock outside [`MonotonicClock`] (tests inject
//! their own [`Clock`]), and never hold more than `num_traces` traces.

mod config;
mod lru;
mod policy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use oxcol_core::telemetry::{Counter, Gauge, Registry};
use oxcol_core::{Batch, Processor, Refusal, Signal};

pub use config::{
    AndConfig, BooleanAttributeConfig, CompositeConfig, Config, DecisionCacheConfig, DropConfig,
    LatencyConfig, NumericAttributeConfig, OttlConditionConfig, PolicyConfig, ProbabilisticConfig,
    RateAllocationConfig, RateLimitingConfig, SpanCountConfig, StatusCodeConfig,
    StringAttributeConfig, TraceStateConfig,
};
pub use policy::{Decision, hash_trace_id, parse_trace_state, probability_threshold};

use lru::Lru;
use policy::{Policy, TraceView};

pub const TYPE: &str = "tail_sampling";
/// The Collector has no other spelling for this type (checked in contrib's metadata).
pub const ALIASES: &[&str] = &["tail_sampling"];

/// A trace ID.
type TraceId = [u8; 16];

/// The processor's time: a monotonic duration since an arbitrary origin.
pub trait Clock: Send {
    fn now(&self) -> Duration;
}

/// The real clock: time since the processor was built.
#[derive(Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Self-telemetry of one `tail_sampling` processor, under the Collector's names.
#[derive(Clone, Debug, Default)]
pub struct TailSamplingCounters {
    pub new_trace_id_received: Counter,
    pub traces_on_memory: Gauge,
    pub trace_dropped_too_early: Counter,
    pub policy_evaluation_error: Counter,
    pub global_sampled: Counter,
    pub global_not_sampled: Counter,
    pub global_dropped: Counter,
    pub early_release_sampled: Counter,
    pub early_release_not_sampled: Counter,
}

const PREFIX: &str = "otelcol_processor_tail_sampling_";

impl TailSamplingCounters {
    pub fn new(registry: &Registry, processor: &str) -> TailSamplingCounters {
        let processor_label = [("processor", processor)];
        let global = |decision: Decision| {
            registry.counter(
                &format!("{PREFIX}global_count_traces_sampled"),
                "Global count of traces that were sampled or not by at least one policy.",
                &[
                    ("processor", processor),
                    ("sampled", sampled_label(decision)),
                    ("decision", decision.label()),
                ],
            )
        };
        let early = |sampled: &str| {
            registry.counter(
                &format!("{PREFIX}early_releases_from_cache_decision"),
                "Number of spans that were able to be immediately released due to a decision cache hit.",
                &[("processor", processor), ("sampled", sampled)],
            )
        };
        TailSamplingCounters {
            new_trace_id_received: registry.counter(
                &format!("{PREFIX}new_trace_id_received"),
                "Counts the arrival of new traces.",
                &processor_label,
            ),
            traces_on_memory: registry.gauge(
                &format!("{PREFIX}sampling_traces_on_memory"),
                "Tracks the number of traces current on memory.",
                &processor_label,
            ),
            trace_dropped_too_early: registry.counter(
                &format!("{PREFIX}sampling_trace_dropped_too_early"),
                "Count of traces that needed to be dropped before the configured wait time.",
                &processor_label,
            ),
            policy_evaluation_error: registry.counter(
                &format!("{PREFIX}sampling_policy_evaluation_error"),
                "Count of sampling policy evaluation errors.",
                &processor_label,
            ),
            global_sampled: global(Decision::Sampled),
            global_not_sampled: global(Decision::NotSampled),
            global_dropped: global(Decision::Dropped),
            early_release_sampled: early("true"),
            early_release_not_sampled: early("false"),
        }
    }

    fn global(&self, decision: Decision) -> &Counter {
        match decision {
            Decision::Sampled => &self.global_sampled,
            Decision::NotSampled => &self.global_not_sampled,
            Decision::Dropped => &self.global_dropped,
        }
    }
}

/// The Collector's `sampled` attribute: false for not sampled and dropped.
fn sampled_label(decision: Decision) -> &'static str {
    if decision.label() == "sampled" {
        "true"
    } else {
        "false"
    }
}

/// A top-level policy with its `count_traces_sampled` counters (by decision label).
struct NamedPolicy {
    policy: Policy,
    sampled: Counter,
    not_sampled: Counter,
    dropped: Counter,
}

impl NamedPolicy {
    fn count(&self, decision: Decision) {
        match decision {
            Decision::Sampled => self.sampled.add(1),
            Decision::NotSampled => self.not_sampled.add(1),
            Decision::Dropped => self.dropped.add(1),
        }
    }
}

/// A trace in memory: its spans until decided, then only its decision (for late spans).
struct HeldTrace {
    /// Arrival order, unique per held trace (an ID evicted and seen again gets a new one).
    seq: u64,
    span_count: i64,
    batches: Vec<ResourceSpans>,
    decision: Option<Decision>,
}

pub struct TailSamplingProcessor {
    id: String,
    decision_wait: Duration,
    num_traces: usize,
    sample_on_first_match: bool,
    drop_pending_traces_on_shutdown: bool,
    /// `drop` policies first (their Dropped ends the evaluation), then the others in order.
    policies: Vec<NamedPolicy>,
    clock: Box<dyn Clock>,
    traces: HashMap<TraceId, HeldTrace>,
    /// Every held trace by `seq`, oldest first: who leaves when `num_traces` is reached.
    by_age: BTreeMap<u64, TraceId>,
    /// Traces awaiting a decision by `seq` (arrival order): (arrival time, trace ID).
    awaiting: BTreeMap<u64, (Duration, TraceId)>,
    next_seq: u64,
    sampled_cache: Option<Lru<TraceId, ()>>,
    non_sampled_cache: Option<Lru<TraceId, ()>>,
    /// Spans of sampled traces not yet taken by `take_pending`.
    released: Vec<ResourceSpans>,
    counters: TailSamplingCounters,
}

impl TailSamplingProcessor {
    /// Builds the processor with the real clock; `registry`: where its self-telemetry goes.
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<TailSamplingProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let counters = registry
            .map(|r| TailSamplingCounters::new(r, id))
            .unwrap_or_default();
        // The Collector labels a policy `<component name>.<policy name>` when the id has a name.
        let label = |name: &str| match id.split_once('/') {
            Some((_, component_name)) => format!("{component_name}.{name}"),
            None => name.to_string(),
        };
        let mut drops = Vec::new();
        let mut others = Vec::new();
        for policy_config in &config.policies {
            let policy = Policy::build(policy_config)
                .map_err(|e| format!("policy {:?}: {e}", policy_config.name))?;
            let policy_label = label(&policy_config.name);
            let counter = |decision: Decision| match registry {
                Some(registry) => registry.counter(
                    &format!("{PREFIX}count_traces_sampled"),
                    "Count of traces that were sampled or not per sampling policy.",
                    &[
                        ("processor", id),
                        ("policy", &policy_label),
                        ("sampled", sampled_label(decision)),
                        ("decision", decision.label()),
                    ],
                ),
                None => Counter::default(),
            };
            let named = NamedPolicy {
                policy,
                sampled: counter(Decision::Sampled),
                not_sampled: counter(Decision::NotSampled),
                dropped: counter(Decision::Dropped),
            };
            if policy_config.policy_type == "drop" {
                drops.push(named);
            } else {
                others.push(named);
            }
        }
        drops.extend(others);
        let num_traces = usize::try_from(config.num_traces).unwrap_or(usize::MAX);
        // A size hint only: the traces expected during one decision_wait, never above the bound.
        let expected = config
            .expected_new_traces_per_sec
            .saturating_mul(config.decision_wait.get().as_secs().max(1));
        let capacity = usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .min(num_traces);
        let cache = |size: usize| (size > 0).then(|| Lru::new(size));
        Ok(TailSamplingProcessor {
            id: id.to_string(),
            decision_wait: config.decision_wait.get(),
            num_traces,
            sample_on_first_match: config.sample_on_first_match,
            drop_pending_traces_on_shutdown: config.drop_pending_traces_on_shutdown,
            policies: drops,
            clock: Box::new(MonotonicClock::new()),
            traces: HashMap::with_capacity(capacity),
            by_age: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            next_seq: 0,
            sampled_cache: cache(config.decision_cache.sampled_cache_size),
            non_sampled_cache: cache(config.decision_cache.non_sampled_cache_size),
            released: Vec::new(),
            counters,
        })
    }

    /// Replaces the clock (tests drive time by hand). Call before the first batch.
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> TailSamplingProcessor {
        self.clock = clock;
        self
    }

    pub fn counters(&self) -> &TailSamplingCounters {
        &self.counters
    }

    /// Traces held in memory (awaiting a decision, or decided and remembered).
    pub fn traces_in_memory(&self) -> usize {
        self.traces.len()
    }

    /// Takes one resource's spans: each trace's part goes to its held trace, or straight
    /// to `forward` when the trace was already sampled.
    fn accept(
        &mut self,
        trace_id: TraceId,
        part: ResourceSpans,
        span_count: i64,
        forward: &mut Vec<ResourceSpans>,
    ) {
        if let Some(cache) = &mut self.sampled_cache
            && cache.get(&trace_id).is_some()
        {
            forward.push(part);
            self.counters
                .early_release_sampled
                .add(span_count.unsigned_abs());
            return;
        }
        if let Some(cache) = &mut self.non_sampled_cache
            && cache.get(&trace_id).is_some()
        {
            self.counters
                .early_release_not_sampled
                .add(span_count.unsigned_abs());
            return;
        }
        let Some(trace) = self.traces.get_mut(&trace_id) else {
            if self.traces.len() >= self.num_traces {
                self.evict_oldest();
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let trace = HeldTrace {
                seq,
                span_count,
                batches: vec![part],
                decision: None,
            };
            self.traces.insert(trace_id, trace);
            self.by_age.insert(seq, trace_id);
            self.awaiting.insert(seq, (self.clock.now(), trace_id));
            self.counters.new_trace_id_received.add(1);
            return;
        };
        trace.span_count = trace.span_count.saturating_add(span_count);
        match trace.decision {
            None => trace.batches.push(part),
            Some(Decision::Sampled) => forward.push(part),
            Some(Decision::NotSampled) => self.remember_not_sampled(trace_id),
            // Dropped traces (and the unreachable inverted decisions) let nothing through.
            Some(_) => {}
        }
    }

    /// Removes the oldest held trace to make room; an undecided one loses its spans.
    fn evict_oldest(&mut self) {
        let Some((seq, trace_id)) = self.by_age.pop_first() else {
            return;
        };
        if let Some(trace) = self.traces.remove(&trace_id)
            && trace.decision.is_none()
        {
            self.awaiting.remove(&seq);
            self.counters.trace_dropped_too_early.add(1);
            tracing::debug!(processor = %self.id, spans = trace.span_count, "trace pushed out of memory (num_traces) before its decision");
        }
    }

    /// Forgets a trace (its decision lives on in a decision cache).
    fn forget(&mut self, trace_id: &TraceId) {
        if let Some(trace) = self.traces.remove(trace_id) {
            self.by_age.remove(&trace.seq);
        }
    }

    /// The Collector's `releaseNotSampledTrace`: remember the decision in the cache and,
    /// when the cache holds it, forget the trace.
    fn remember_not_sampled(&mut self, trace_id: TraceId) {
        if let Some(cache) = &mut self.non_sampled_cache {
            cache.put(trace_id, ());
            self.forget(&trace_id);
        }
    }

    /// Decides every trace that has waited `decision_wait` (all of them when `all`).
    fn decide_due(&mut self, all: bool) {
        let now = self.clock.now();
        while let Some((&seq, &(arrival, trace_id))) = self.awaiting.first_key_value() {
            if !all && now < arrival.saturating_add(self.decision_wait) {
                break;
            }
            self.awaiting.remove(&seq);
            self.decide(seq, trace_id, now);
        }
        self.update_gauge();
    }

    fn decide(&mut self, seq: u64, trace_id: TraceId, now: Duration) {
        // Gone, or another trace with the same ID since (both unexpected: eviction removes
        // the awaiting entry).
        let Some(trace) = self.traces.get_mut(&trace_id) else {
            return;
        };
        if trace.seq != seq || trace.decision.is_some() {
            return;
        }
        let batches = std::mem::take(&mut trace.batches);
        let span_count = trace.span_count;
        let view = TraceView {
            trace_id: &trace_id,
            span_count,
            batches: &batches,
        };
        let decision = self.evaluate(&view, now);
        self.counters.global(decision).add(1);
        if let Some(trace) = self.traces.get_mut(&trace_id) {
            trace.decision = Some(decision);
        }
        if decision == Decision::Sampled {
            self.released.extend(batches);
            if let Some(cache) = &mut self.sampled_cache {
                cache.put(trace_id, ());
                self.forget(&trace_id);
            }
        } else {
            self.remember_not_sampled(trace_id);
        }
    }

    /// The Collector's `makeDecision`: every policy's answer, combined by its rules.
    fn evaluate(&mut self, trace: &TraceView<'_>, now: Duration) -> Decision {
        let (mut sampled, mut dropped) = (false, false);
        for named in &mut self.policies {
            let decision = match named.policy.evaluate(trace, now) {
                Ok(decision) => decision,
                Err(error) => {
                    self.counters.policy_evaluation_error.add(1);
                    tracing::debug!(processor = %self.id, %error, "sampling policy error");
                    continue;
                }
            };
            named.count(decision);
            match decision {
                Decision::Sampled => sampled = true,
                Decision::NotSampled => {}
                Decision::Dropped => dropped = true,
            }
            if dropped || (self.sample_on_first_match && decision == Decision::Sampled) {
                break;
            }
        }
        if dropped {
            Decision::Dropped
        } else if sampled {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }

    fn update_gauge(&self) {
        self.counters
            .traces_on_memory
            .set(i64::try_from(self.traces.len()).unwrap_or(i64::MAX));
    }
}

/// Splits one resource's spans by trace ID, each part keeping the resource and scopes;
/// returns (trace ID, part, span count) in order of first appearance.
fn split_by_trace(resource_spans: ResourceSpans) -> Vec<(TraceId, ResourceSpans, i64)> {
    let ResourceSpans {
        resource,
        scope_spans,
        schema_url,
    } = resource_spans;
    let mut parts: Vec<(TraceId, ResourceSpans, i64)> = Vec::new();
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    // Per part: the input scope its last ScopeSpans came from.
    let mut last_scope: Vec<usize> = Vec::new();
    for (scope_index, scope) in scope_spans.into_iter().enumerate() {
        let ScopeSpans {
            scope: scope_meta,
            spans,
            schema_url: scope_schema,
        } = scope;
        for span in spans {
            let trace_id = trace_id_of(&span.trace_id);
            let part_index = *index.entry(trace_id).or_insert_with(|| {
                parts.push((
                    trace_id,
                    ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    },
                    0,
                ));
                last_scope.push(usize::MAX);
                parts.len() - 1
            });
            let (_, part, count) = &mut parts[part_index];
            if last_scope[part_index] != scope_index {
                last_scope[part_index] = scope_index;
                part.scope_spans.push(ScopeSpans {
                    scope: scope_meta.clone(),
                    spans: Vec::new(),
                    schema_url: scope_schema.clone(),
                });
            }
            if let Some(scope_part) = part.scope_spans.last_mut() {
                scope_part.spans.push(span);
            }
            *count += 1;
        }
    }
    parts
}

/// A span's trace ID; an empty one is the all-zero ID (as pdata reads it). Only called
/// after [`check_trace_ids`].
fn trace_id_of(bytes: &[u8]) -> TraceId {
    <TraceId>::try_from(bytes).unwrap_or_default()
}

/// Every span's trace ID must be 16 bytes (or empty), as the Collector's decoder demands.
fn check_trace_ids(resource_spans: &[ResourceSpans]) -> Result<(), String> {
    let spans = resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    match spans
        .map(|s| s.trace_id.len())
        .find(|len| *len != 16 && *len != 0)
    {
        Some(len) => Err(format!(
            "a span's trace_id has {len} bytes, it must have 16: fix the sender"
        )),
        None => Ok(()),
    }
}

impl Processor for TailSamplingProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        if batch.signal() != Signal::Traces {
            return Ok(batch);
        }
        let id = &self.id;
        let resource_spans = batch.traces_mut().map_err(|e| Refusal::Invalid {
            reason: format!("processor {id:?}: cannot decode spans: {e}"),
        })?;
        check_trace_ids(resource_spans).map_err(|e| Refusal::Invalid {
            reason: format!("processor {id:?}: {e}"),
        })?;
        let resource_spans = std::mem::take(resource_spans);
        let mut forward = Vec::new();
        for resource in resource_spans {
            for (trace_id, part, span_count) in split_by_trace(resource) {
                self.accept(trace_id, part, span_count, &mut forward);
            }
        }
        self.update_gauge();
        // Spans of traces already sampled go on at once, as in the Collector.
        Ok(Batch::from_traces(forward))
    }

    fn tick_interval(&self) -> Option<Duration> {
        // The Collector's decision ticker runs every second.
        Some(
            self.decision_wait
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
        )
    }

    fn tick(&mut self) {
        self.decide_due(false);
    }

    fn shutdown(&mut self) {
        if self.drop_pending_traces_on_shutdown {
            self.awaiting.clear();
        } else {
            // Decide on what arrived so far, so held traces are not lost on a clean stop.
            self.decide_due(true);
        }
        self.update_gauge();
    }

    fn take_pending(&mut self) -> Vec<Batch> {
        if self.released.is_empty() {
            return Vec::new();
        }
        vec![Batch::from_traces(std::mem::take(&mut self.released))]
    }
}
