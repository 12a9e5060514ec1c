//! Engine tests on real files in a temporary directory.

use super::*;
use std::sync::atomic::AtomicUsize;
use tokio_util::sync::CancellationToken;

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "oxcol-dq-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(dir: &Path) -> Options {
    Options {
        dir: dir.to_path_buf(),
        fsync: true,
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        lock_timeout: Duration::from_millis(100),
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!(
        "record number {i} {}",
        "x".repeat((i % 7) as usize)
    ))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

async fn append_n(queue: &DiskQueue, range: std::ops::Range<u64>) {
    for i in range {
        queue.append(Signal::Metrics, i, payload(i)).await.unwrap();
    }
}

/// Reads everything readable now.
async fn drain(queue: &DiskQueue) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(r) = queue.try_next().await {
        out.push(r);
    }
    out
}

#[tokio::test]
async fn append_read_commit_reopen() {
    let tmp = TempDir::new("basic");
    {
        let (queue, recovery) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
        assert_eq!(recovery, Recovery::default());
        append_n(&queue, 0..10).await;
        let read = drain(&queue).await;
        assert_eq!(read.len(), 10);
        for (i, r) in read.iter().enumerate() {
            assert_eq!(r.payload, payload(i as u64));
            assert_eq!(r.items, i as u64);
            assert_eq!(r.signal, Signal::Metrics);
        }
        // Acks out of order: 0,1,2 and 4 done, 3 not: the commit stops after 2.
        queue.ack(&[
            read[4].ticket,
            read[1].ticket,
            read[0].ticket,
            read[2].ticket,
        ]);
        queue.close();
    }
    {
        let (queue, recovery) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
        assert_eq!(recovery.records, 7, "records 3..10 are not committed");
        assert_eq!(recovery.items, (3..10).sum::<u64>());
        assert_eq!(recovery.corrupt_records, 0);
        let read = drain(&queue).await;
        assert_eq!(
            read.iter().map(|r| r.items).collect::<Vec<_>>(),
            (3..10).collect::<Vec<_>>()
        );
        // Unacked records come back after a reopen (at-least-once).
        queue.close();
    }
    let (queue, recovery) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
    assert_eq!(recovery.records, 7);
    let read = drain(&queue).await;
    let tickets: Vec<u64> = read.iter().map(|r| r.ticket).collect();
    queue.ack(&tickets);
    queue.close();
    let (_queue, recovery) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
    assert_eq!(recovery.records, 0);
}

#[tokio::test]
async fn next_waits_for_appends_and_ends_after_close_input() {
    let tmp = TempDir::new("wait");
    let (queue, _) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
    let queue = Arc::new(queue);
    let stop = CancellationToken::new();
    let reader = {
        let queue = Arc::clone(&queue);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(r) = queue.next(&stop).await {
                got.push(r.items);
            }
            got
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    append_n(&queue, 0..5).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue.close_input();
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

/// Writes three records, closes, and returns (segment path, start of the last record).
async fn three_records(dir: &Path) -> (PathBuf, u64) {
    let (queue, _) = DiskQueue::open("t", &options(dir), Stats::default()).unwrap();
    append_n(&queue, 0..3).await;
    queue.close();
    let segs = segments(dir);
    assert_eq!(segs.len(), 1);
    let last_start = (HEADER_LEN as u64) * 2 + payload(0).len() as u64 + payload(1).len() as u64;
    (segs[0].clone(), last_start)
}

#[tokio::test]
async fn a_torn_last_record_is_cut_at_every_byte_offset() {
    let tmp = TempDir::new("torn");
    let (segment, last_start) = three_records(&tmp.0).await;
    let whole = read_file(&segment).unwrap();
    assert_eq!(
        whole.len() as u64,
        last_start + HEADER_LEN as u64 + payload(2).len() as u64
    );
    for cut in last_start..whole.len() as u64 {
        let case = TempDir::new("torn-case");
        fs::write(
            case.0.join(segment.file_name().unwrap()),
            &whole[..cut as usize],
        )
        .unwrap();
        let stats = Stats::default();
        let (queue, recovery) = DiskQueue::open("t", &options(&case.0), stats.clone()).unwrap();
        let torn = cut > last_start;
        assert_eq!(recovery.records, 2, "cut at {cut}");
        assert_eq!(recovery.corrupt_records, u64::from(torn), "cut at {cut}");
        assert_eq!(recovery.dropped_bytes, cut - last_start, "cut at {cut}");
        assert_eq!(stats.corrupt_records.get(), u64::from(torn));
        // The file was cut back to the last whole record.
        assert_eq!(
            fs::metadata(case.0.join(segment.file_name().unwrap()))
                .unwrap()
                .len(),
            last_start
        );
        // Reading and writing go on.
        queue
            .append(Signal::Metrics, 99, payload(99))
            .await
            .unwrap();
        let read = drain(&queue).await;
        assert_eq!(
            read.iter().map(|r| r.items).collect::<Vec<_>>(),
            vec![0, 1, 99],
            "cut at {cut}"
        );
    }
}

#[tokio::test]
async fn checksum_failures_are_detected_counted_and_skipped() {
    let tmp = TempDir::new("crc");
    let (segment, last_start) = three_records(&tmp.0).await;
    let whole = read_file(&segment).unwrap();
    // A bad last record, and a bad middle record followed by a good one.
    let middle_payload = HEADER_LEN + payload(0).len() + HEADER_LEN + 3;
    for (flip, expected) in [
        (last_start as usize + HEADER_LEN + 2, vec![0, 1]),
        (middle_payload, vec![0, 2]),
    ] {
        let case = TempDir::new("crc-case");
        let mut bytes = whole.clone();
        bytes[flip] ^= 0x40;
        fs::write(case.0.join(segment.file_name().unwrap()), &bytes).unwrap();
        let (queue, recovery) = DiskQueue::open("t", &options(&case.0), Stats::default()).unwrap();
        assert_eq!(recovery.corrupt_records, 1, "flip at {flip}");
        let read = drain(&queue).await;
        assert_eq!(
            read.iter().map(|r| r.items).collect::<Vec<_>>(),
            expected,
            "flip at {flip}"
        );
    }
    // A mangled length (far past the end): the rest of the segment is cut, counted once.
    let case = TempDir::new("len-case");
    let mut bytes = whole.clone();
    bytes[HEADER_LEN + payload(0).len() + 2] = 0x7f;
    fs::write(case.0.join(segment.file_name().unwrap()), &bytes).unwrap();
    let (queue, recovery) = DiskQueue::open("t", &options(&case.0), Stats::default()).unwrap();
    assert_eq!(recovery.corrupt_records, 1);
    assert_eq!(drain(&queue).await.len(), 1);
}

#[tokio::test]
async fn random_garbage_segments_never_fail_the_start() {
    let tmp = TempDir::new("garbage");
    let (segment, _) = three_records(&tmp.0).await;
    let whole = read_file(&segment).unwrap();
    let mut rng = oxcol_core::testdata::XorShift64(0x9e3779b97f4a7c15);
    let mut rand = move || rng.next_u64();
    for _ in 0..200 {
        let case = TempDir::new("garbage-case");
        let mut bytes = whole.clone();
        for _ in 0..(rand() % 4 + 1) {
            let at = (rand() % bytes.len() as u64) as usize;
            bytes[at] = rand() as u8;
        }
        bytes.truncate((rand() % (bytes.len() as u64 + 1)) as usize);
        fs::write(case.0.join(segment.file_name().unwrap()), &bytes).unwrap();
        fs::write(case.0.join(META), format!("garbage {}", rand())).unwrap();
        let (queue, recovery) = DiskQueue::open("t", &options(&case.0), Stats::default()).unwrap();
        let read = drain(&queue).await;
        assert_eq!(read.len() as u64, recovery.records);
        assert!(read.len() <= 3);
        for r in &read {
            assert_eq!(
                r.payload,
                payload(r.items),
                "a record that passed the checksum differs"
            );
        }
    }
}

#[tokio::test]
async fn a_full_queue_refuses_and_recovers_when_segments_are_deleted() {
    let tmp = TempDir::new("full");
    let record = HEADER_LEN as u64 + 1000;
    let opts = Options {
        max_bytes: record * 20,
        segment_bytes: record * 4,
        ..options(&tmp.0)
    };
    let (queue, _) = DiskQueue::open("t", &opts, Stats::default()).unwrap();
    let body = Bytes::from(vec![7u8; 1000]);
    let mut accepted = 0;
    loop {
        match queue.append(Signal::Logs, 1, body.clone()).await {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(e, AppendError::Full);
                break;
            }
        }
        assert!(accepted <= 20);
    }
    assert_eq!(accepted, 20);
    assert!(queue.used_bytes() <= opts.max_bytes);
    let before = segments(&tmp.0).len();
    assert_eq!(before, 5);
    // Consume and ack the first 8 (two whole segments): they are deleted and room returns.
    let read = drain(&queue).await;
    assert_eq!(read.len(), 20);
    queue.ack(&read[..8].iter().map(|r| r.ticket).collect::<Vec<_>>());
    // The deleting task removes each file, then subtracts its bytes: wait for both.
    let deadline = Instant::now() + Duration::from_secs(5);
    while segments(&tmp.0).len() != before - 2 || queue.used_bytes() != record * 12 {
        assert!(
            Instant::now() < deadline,
            "consumed segments were not deleted: {:?}, {} bytes used",
            segments(&tmp.0),
            queue.used_bytes()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..8 {
        queue.append(Signal::Logs, 1, body.clone()).await.unwrap();
    }
    assert_eq!(
        queue.append(Signal::Logs, 1, body.clone()).await,
        Err(AppendError::Full)
    );
    queue.ack(&read[8..].iter().map(|r| r.ticket).collect::<Vec<_>>());
    let rest = drain(&queue).await;
    assert_eq!(rest.len(), 8);
    queue.ack(&rest.iter().map(|r| r.ticket).collect::<Vec<_>>());
    // Everything acked: the segments are deleted, only a new empty one is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while queue.used_bytes() != 0 {
        assert!(
            Instant::now() < deadline,
            "consumed segments were not deleted: {:?}",
            segments(&tmp.0)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    queue.close();
    assert_eq!(segments(&tmp.0).len(), 1, "{:?}", segments(&tmp.0));
    let (_queue, recovery) = DiskQueue::open("t", &opts, Stats::default()).unwrap();
    assert_eq!(recovery.records, 0);
}

#[tokio::test]
async fn concurrent_appends_share_syncs_and_keep_every_record() {
    let tmp = TempDir::new("group");
    let (queue, _) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
    let queue = Arc::new(queue);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let queue = Arc::clone(&queue);
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                queue
                    .append(Signal::Traces, t * 1000 + i, payload(t * 1000 + i))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut items: Vec<u64> = drain(&queue).await.iter().map(|r| r.items).collect();
    items.sort();
    let mut expected: Vec<u64> = (0..16u64)
        .flat_map(|t| (0..50).map(move |i| t * 1000 + i))
        .collect();
    expected.sort();
    assert_eq!(items, expected);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_queue() {
    let tmp = TempDir::new("lock");
    let (_queue, _) = DiskQueue::open("t", &options(&tmp.0), Stats::default()).unwrap();
    let error = DiskQueue::open("t", &options(&tmp.0), Stats::default())
        .err()
        .unwrap();
    assert!(error.contains("locked by another process"), "{error}");
}

mod queued_exporter {
    use super::*;
    use crate::queue::{QueueConfig, QueuedExporter, RetryConfig};
    use futures::future::BoxFuture;
    use oxcol_core::telemetry::{ExporterCounters, Registry};
    use oxcol_core::{Batch, BatchSettings, ExportError, ExportOutcome, Exporter, GoDuration};

    /// Counts items it is given; fails (retryably) while `down` is set.
    #[derive(Default)]
    struct Backend {
        down: AtomicBool,
        items: AtomicU64,
        calls: AtomicU64,
    }

    impl Exporter for Backend {
        fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let result = if self.down.load(Ordering::SeqCst) {
                Err(ExportError::Retryable {
                    reason: "down".into(),
                    after: None,
                })
            } else {
                self.items.fetch_add(batch.items(), Ordering::SeqCst);
                Ok(ExportOutcome::default())
            };
            Box::pin(async move { result })
        }
    }

    fn storage(dir: &Path) -> Config {
        Config {
            directory: Some(dir.display().to_string()),
            ..Config::default()
        }
    }

    fn start(
        backend: Arc<Backend>,
        dir: &Path,
        registry: &Registry,
        batching: Option<BatchSettings>,
    ) -> QueuedExporter {
        let retry = RetryConfig {
            initial_interval: GoDuration::from_millis(5),
            max_interval: GoDuration::from_millis(20),
            max_elapsed_time: GoDuration::from_secs(0),
            ..RetryConfig::default()
        };
        let queue = QueueConfig {
            num_consumers: 3,
            storage: Some("file_storage".into()),
            ..QueueConfig::default()
        };
        let counters = ExporterCounters::new(registry, "otlp", Signal::Metrics);
        QueuedExporter::start_durable(
            "otlp",
            Signal::Metrics,
            backend,
            &queue,
            &retry,
            batching,
            counters,
            registry,
            &storage(dir),
        )
        .unwrap()
    }

    fn batch() -> Batch {
        Batch::from_metrics(oxcol_core::testdata::metrics_request(1, 1, 3).resource_metrics)
    }

    #[tokio::test]
    async fn metadata_keys_batching_is_refused_on_a_disk_queue() {
        // The disk keeps only the encoded data: per-tenant batches would lose their tenant.
        let tmp = TempDir::new("metadata-keys");
        let registry = Registry::new();
        let batching = BatchSettings {
            send_batch_size: 10,
            metadata_keys: vec!["x-tenant".into()],
            ..BatchSettings::default()
        };
        let refused = QueuedExporter::start_durable(
            "otlp",
            Signal::Metrics,
            Arc::new(Backend::default()),
            &QueueConfig {
                storage: Some("file_storage".into()),
                ..QueueConfig::default()
            },
            &RetryConfig::default(),
            Some(batching),
            ExporterCounters::new(&registry, "otlp", Signal::Metrics),
            &registry,
            &storage(&tmp.0),
        );
        let error = refused.err().expect("refused");
        assert!(error.contains("does not keep client metadata"), "{error}");
    }

    #[tokio::test]
    async fn unsent_data_survives_a_shutdown_and_is_sent_after_restart() {
        let tmp = TempDir::new("exporter");
        let registry = Registry::new();
        let dead = Arc::new(Backend::default());
        dead.down.store(true, Ordering::SeqCst);
        let queued = start(Arc::clone(&dead), &tmp.0, &registry, None);
        for _ in 0..20 {
            queued.submit(batch()).await.unwrap();
        }
        queued
            .shutdown(Instant::now() + Duration::from_millis(200))
            .await;
        assert!(dead.calls.load(Ordering::SeqCst) > 0);
        let failed =
            oxcol_core::telemetry::ExporterCounters::new(&registry, "otlp", Signal::Metrics)
                .send_failed
                .get();
        assert_eq!(failed, 0, "data kept on disk must not count as failed");

        let registry = Registry::new();
        let live = Arc::new(Backend::default());
        let batching = BatchSettings {
            send_batch_size: 12,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(20),
            ..BatchSettings::default()
        };
        let queued = start(Arc::clone(&live), &tmp.0, &registry, Some(batching));
        let deadline = Instant::now() + Duration::from_secs(5);
        while live.items.load(Ordering::SeqCst) < 60 {
            assert!(
                Instant::now() < deadline,
                "only {} of 60 items sent",
                live.items.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        queued
            .shutdown(Instant::now() + Duration::from_secs(2))
            .await;
        assert_eq!(
            live.items.load(Ordering::SeqCst),
            60,
            "sent twice within one run"
        );
        assert!(
            live.calls.load(Ordering::SeqCst) < 20,
            "records were not grouped: {} calls",
            live.calls.load(Ordering::SeqCst)
        );
        // Everything was committed: a third start has nothing to send.
        let registry = Registry::new();
        let third = Arc::new(Backend::default());
        let queued = start(Arc::clone(&third), &tmp.0, &registry, None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        queued
            .shutdown(Instant::now() + Duration::from_secs(1))
            .await;
        assert_eq!(third.items.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_full_disk_queue_refuses_retryably() {
        let tmp = TempDir::new("exporter-full");
        let registry = Registry::new();
        let dead = Arc::new(Backend::default());
        dead.down.store(true, Ordering::SeqCst);
        let retry = RetryConfig {
            initial_interval: GoDuration::from_millis(5),
            max_elapsed_time: GoDuration::from_secs(0),
            ..RetryConfig::default()
        };
        let queue = QueueConfig {
            storage: Some("file_storage/q".into()),
            ..QueueConfig::default()
        };
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let config = Config {
            max_size_mib: 1,
            ..storage(&tmp.0)
        };
        let queued = QueuedExporter::start_durable(
            "otlp",
            Signal::Metrics,
            dead,
            &queue,
            &retry,
            None,
            counters.clone(),
            &registry,
            &config,
        )
        .unwrap();
        let big =
            Batch::from_metrics(oxcol_core::testdata::metrics_request(1, 50, 100).resource_metrics);
        let mut accepted = 0;
        let refusal = loop {
            match queued.submit(big.clone()).await {
                Ok(()) => accepted += 1,
                Err(refusal) => break refusal,
            }
            assert!(accepted < 10_000);
        };
        assert!(refusal.is_retryable(), "{refusal:?}");
        assert!(refusal.reason().contains("full"), "{refusal:?}");
        assert!(accepted > 0);
        assert_eq!(counters.enqueue_failed.get(), big.items());
        queued
            .shutdown(Instant::now() + Duration::from_millis(100))
            .await;
    }
}
