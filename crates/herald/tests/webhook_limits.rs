//! Webhooks under hostile load and failing receivers, against the `herald` binary: a
//! subscribe/unsubscribe storm keeps the queue and the outbox bounded, a stuck outbox does
//! not hold up shutdown, and a failing receiver's credentials never reach the logs.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald::webhooks::Store;
use serde_json::json;
use support::sink::WebhookSink;
use tokio_tungstenite::tungstenite::Message;

/// A `herald` process and the port it listens on.
struct Herald {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Herald {
    /// Starts the binary on `config` (port 0), logging to `log`.
    fn start(dir: &Path, config: &str, log: &Path) -> Self {
        Self::start_binary(env!("CARGO_BIN_EXE_herald").as_ref(), dir, config, log)
    }

    fn start_binary(binary: &Path, dir: &Path, config: &str, log: &Path) -> Self {
        let path = dir.join("herald.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(binary)
            .args(["serve", "--port", "0", "--config"])
            .arg(&path)
            .env_remove("HERALD_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no listening line: {line:?}"));
        Self {
            child,
            port,
            log: log.to_owned(),
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM and returns how long the process took to exit.
    async fn terminate(mut self) -> Duration {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: String = log
                    .chars()
                    .rev()
                    .take(4_000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                assert!(status.success(), "{status:?}; log ends:\n{tail}");
                return started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("still running 60 s after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A metric summed over its series, if rendered.
fn metric(text: &str, name: &str) -> Option<u64> {
    support::prom::parse(text).value(name).map(|v| v as u64)
}

fn storm_config(data_dir: &Path, url: &str, extra: &str) -> String {
    format!(
        r#"
[webhooks]
data_dir = "{}"
timeout = 1
{extra}
[[apps]]
id = "1"
key = "storm-key"
secret = "app-secret"
[[apps.webhooks]]
url = "{url}"
event_types = ["channel_occupied", "channel_vacated"]
"#,
        data_dir.display()
    )
}

/// `sockets` connections subscribing to and leaving unique public channels as fast as they
/// can until `stop` is set; returns the number of subscribe/unsubscribe pairs sent. The
/// sockets stay open (returned) so the server does not see them close.
async fn storm(
    port: u16,
    sockets: usize,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<tokio::task::JoinHandle<()>>) {
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    // Every socket is open before the first writes.
    let mut opened = Vec::new();
    for _ in 0..sockets {
        opened
            .push(support::open(&format!("ws://127.0.0.1:{port}/app/storm-key?protocol=7")).await);
    }
    for (socket, ws) in opened.into_iter().enumerate() {
        let (mut write, mut read) = ws.split();
        // Drain the answers so the server never closes us as a slow consumer.
        readers.push(tokio::spawn(
            async move { while read.next().await.is_some() {} },
        ));
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    let channel = format!("storm-{socket}-{n}");
                    n += 1;
                    let sub = json!({"event":"pusher:subscribe","data":{"channel":channel}});
                    let unsub = json!({"event":"pusher:unsubscribe","data":{"channel":channel}});
                    if write
                        .feed(Message::Text(sub.to_string().into()))
                        .await
                        .is_err()
                        || write
                            .feed(Message::Text(unsub.to_string().into()))
                            .await
                            .is_err()
                    {
                        return (n - 1, write);
                    }
                }
                if write.flush().await.is_err() {
                    break;
                }
            }
            (n, write)
        }));
    }
    let mut total = 0;
    let mut keep = Vec::new();
    for writer in writers {
        let (n, write) = writer.await.unwrap();
        total += n;
        keep.push(tokio::spawn(async move {
            // Holding the write half keeps the socket open until the test ends.
            let _write = write;
            std::future::pending::<()>().await;
        }));
    }
    keep.extend(readers);
    (total, keep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_storm_keeps_the_webhook_queue_bounded_and_collapses_every_pair() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(support::SECRET).await;
    sink.fail_next(usize::MAX);
    let capacity = 2_048;
    let config = storm_config(
        dir.path(),
        &sink.url(),
        &format!("queue_capacity = {capacity}"),
    );
    let herald = Herald::start(dir.path(), &config, &dir.path().join("herald.log"));
    let rss_before = herald.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let storming = tokio::spawn(storm(herald.port, 4, stop.clone()));
    let started = Instant::now();
    let mut deepest = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let text = herald.metrics().await;
        let depth = metric(&text, "herald_webhook_queue_depth").unwrap_or(0);
        deepest = deepest.max(depth);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (pairs, _sockets) = storming.await.unwrap();
    let rss_storm = herald.rss_kib();

    // Every emitted event is accounted for: dropped, collapsed with its partner, or stored.
    let store = Store::open(dir.path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (dropped, collapsed, rows) = loop {
        let text = herald.metrics().await;
        let dropped = metric(&text, "herald_webhooks_dropped_total").unwrap_or(0);
        let collapsed = metric(&text, "herald_webhooks_collapsed_total").unwrap_or(0);
        let rows = store.due(u64::MAX / 2, 1_000_000).unwrap().len() as u64;
        if dropped + collapsed + rows == 2 * pairs {
            break (dropped, collapsed, rows);
        }
        assert!(
            Instant::now() < deadline,
            "{pairs} pairs sent: {dropped} dropped + {collapsed} collapsed + {rows} stored != {}",
            2 * pairs
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "storm: {pairs} pairs, deepest queue {deepest}, dropped {dropped}, collapsed {collapsed}, \
         stored {rows}, RSS {rss_before} KiB -> {rss_storm} KiB"
    );
    assert!(
        pairs > 1_000,
        "the storm was too slow to mean anything: {pairs}"
    );
    assert!(deepest <= capacity, "queue depth {deepest} > {capacity}");
    // A drop breaks at most one pair; every intact pair collapsed without being stored.
    assert!(
        rows <= dropped,
        "{rows} rows stored but only {dropped} drops"
    );
    let took = herald.terminate().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_outbox_drops_and_counts_new_events_and_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 256;
    let config = storm_config(
        dir.path(),
        "http://127.0.0.1:9/hooks",
        &format!("queue_capacity = {capacity}\naddition_delay_ms = 0"),
    );
    let herald = Herald::start(dir.path(), &config, &dir.path().join("herald.log"));
    herald.metrics().await; // the outbox is open once the server answers
    // Another writer holds the database: every insert waits (5 s busy timeout), then fails.
    let db = rusqlite::Connection::open(Store::path(dir.path())).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let storming = tokio::spawn(storm(herald.port, 4, stop.clone()));
    let started = Instant::now();
    let (dropped, depth) = loop {
        let text = herald.metrics().await;
        let dropped = metric(&text, "herald_webhooks_dropped_total").unwrap_or(0);
        let depth = metric(&text, "herald_webhook_queue_depth").unwrap_or(0);
        if dropped > 0 && depth == capacity {
            break (dropped, depth);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing dropped with the outbox stuck:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(depth, capacity, "a full queue shows in the gauge");
    let rss = herald.rss_kib();
    let took = herald.terminate().await;
    stop.store(true, Ordering::Relaxed);
    let (pairs, _) = storming.await.unwrap();
    eprintln!("stuck outbox: {pairs} pairs, {dropped} dropped, RSS {rss} KiB, exit took {took:?}");
    // shutdown_grace is 3 s; the flush gives up after 2 s.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_logged_without_its_credentials_and_not_per_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(support::SECRET).await;
    sink.fail_next(usize::MAX);
    let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = refusing.local_addr().unwrap();
    drop(refusing);
    let secret_url =
        |addr| format!("http://hookuser:hunter2-PASSWORD@{addr}/hooks?token=SECRET-TOKEN");
    let config = storm_config(dir.path(), &secret_url(sink.addr), "").replace(
        "event_types = [\"channel_occupied\", \"channel_vacated\"]",
        &format!(
            "event_types = [\"channel_occupied\"]\n[[apps.webhooks]]\nurl = \"{}\"\n\
             event_types = [\"channel_occupied\"]",
            secret_url(refused)
        ),
    );
    let log = dir.path().join("herald.log");
    let herald = Herald::start(dir.path(), &config, &log);
    let mut client =
        support::TestClient::connect(&format!("ws://127.0.0.1:{}/app/storm-key", herald.port))
            .await;
    for n in 0..40 {
        client.subscribe(&format!("c{n}")).await;
    }
    // 80 events (40 per target), each retried after 1 s, 2 s, 4 s...
    let started = Instant::now();
    loop {
        let text = herald.metrics().await;
        let failed = metric(&text, "herald_webhook_attempts_failed_total").unwrap_or(0);
        if failed >= 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {failed} failed attempts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    herald.terminate().await;
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["hunter2", "PASSWORD", "SECRET-TOKEN", "token=", "hookuser"] {
        assert!(!text.contains(secret), "{secret:?} logged:\n{text}");
    }
    let failing: Vec<&str> = text.lines().filter(|l| l.contains("fail")).collect();
    assert_eq!(
        failing.len(),
        2,
        "one line per target that started failing:\n{}",
        failing.join("\n")
    );
    assert!(
        failing
            .iter()
            .any(|l| l.contains(&format!("http://{}/hooks", sink.addr))),
        "the redacted URL names the target:\n{text}"
    );
}

/// Not a test: measures a long storm against any binary, for the record.
/// `HERALD_BIN=target/release/herald STORM_SECS=30 cargo nextest run -p herald --test
/// webhook_limits --run-ignored only --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn storm_measurement() {
    let binary = std::env::var("HERALD_BIN").unwrap_or(env!("CARGO_BIN_EXE_herald").into());
    let seconds: u64 = std::env::var("STORM_SECS").map_or(30, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sink = WebhookSink::start(support::SECRET).await;
    let config = storm_config(dir.path(), &sink.url(), "");
    let herald = Herald::start_binary(
        binary.as_ref(),
        dir.path(),
        &config,
        &dir.path().join("log"),
    );
    eprintln!("t=0 RSS {} KiB", herald.rss_kib());
    let stop = Arc::new(AtomicBool::new(false));
    let storming = tokio::spawn(storm(herald.port, 4, stop.clone()));
    for t in 1..=seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if t % 5 == 0 || t == seconds {
            let text = herald.metrics().await;
            let value = |name| metric(&text, name).map_or("-".into(), |v| v.to_string());
            eprintln!(
                "t={t}s RSS {} KiB queue {} dropped {} collapsed {} delivered {}",
                herald.rss_kib(),
                value("herald_webhook_queue_depth"),
                value("herald_webhooks_dropped_total"),
                value("herald_webhooks_collapsed_total"),
                value("herald_webhooks_delivered_total"),
            );
        }
    }
    let rows = Store::open(dir.path())
        .unwrap()
        .due(u64::MAX / 2, 10_000_000)
        .unwrap()
        .len();
    let db_bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("webhooks.sqlite3")
        })
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    let delivered: usize = sink
        .requests()
        .iter()
        .map(|r| r.body["events"].as_array().map_or(0, Vec::len))
        .sum();
    for r in sink.requests().iter().take(5) {
        eprintln!("sample: {} at {:?}", r.body, r.at);
    }
    eprintln!(
        "{rows} rows pending, outbox files {} KiB, {delivered} events delivered",
        db_bytes / 1024
    );
    let took = herald.terminate().await;
    stop.store(true, Ordering::Relaxed);
    let (pairs, _) = storming.await.unwrap();
    eprintln!("{pairs} pairs in {seconds} s; SIGTERM during the storm -> exit in {took:?}");
}
