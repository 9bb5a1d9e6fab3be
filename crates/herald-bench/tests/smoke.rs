//! CI smoke run: every herald-bench scenario against a real Herald server on port 0, a few
//! hundred connections for a few seconds, checking the JSON reports full delivery.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use herald::config::Config;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const APP: &str = r#"
[server]
outbox_capacity = 4096
[[apps]]
id = "1"
key = "app-key"
secret = "app-secret"
enable_client_messages = true
[apps.limits]
max_client_events_per_second = 100
"#;

struct Server {
    url: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Server {
    let config = Config::from_toml(APP).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(herald::run(config, listener, shutdown.clone()));
    Server { url, shutdown }
}

/// Runs `herald-bench <args> --url <server> --json --server-pid <self>` and parses its JSON.
async fn bench(server: &Server, args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald-bench"));
    cmd.args(args)
        .args(["--url", &server.url, "--json"])
        .args(["--server-pid", &std::process::id().to_string()]);
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "herald-bench {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_fanout_ramp_deliver_everything() {
    let server = start().await;
    let c = bench(
        &server,
        &["connections", "--connections", "300", "--hold", "1"],
    )
    .await;
    let r = &c["result"];
    assert_eq!(r["connected"], 300, "{c}");
    assert_eq!(r["failed"], 0, "{c}");
    assert!(r["rss_per_connection"].as_f64().unwrap() > 0.0, "{c}");

    let f = bench(
        &server,
        &[
            "fanout",
            "--subscribers",
            "200",
            "--ramp",
            "--ramp-start",
            "20",
            "--ramp-factor",
            "2",
            "--max-steps",
            "2",
            "--duration",
            "1",
            "--p99-bound-ms",
            "1000",
        ],
    )
    .await;
    assert_eq!(f["connect"]["connected"], 200, "{f}");
    let steps = f["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{f}");
    for step in steps {
        assert_eq!(step["delivery_ratio"], 1.0, "{step}");
        assert_eq!(step["delivered"], step["expected"], "{step}");
        assert!(step["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{step}");
    }
    assert!(
        f["knee"]["deliveries_per_sec"].as_f64().unwrap() > 1000.0,
        "{f}"
    );
    assert!(f["half_knee"].is_object(), "{f}");
    assert!(f["sustained"]["delivery_held"].as_bool().unwrap(), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_client_events_churn_and_http_work() {
    let server = start().await;
    let ch = bench(
        &server,
        &[
            "channels",
            "--connections",
            "200",
            "--rate",
            "200",
            "--duration",
            "1",
            "--batch",
            "5",
        ],
    )
    .await;
    assert_eq!(ch["result"]["delivery_ratio"], 1.0, "{ch}");
    assert_eq!(ch["result"]["delivered"], 200, "{ch}");

    let pairs = bench(
        &server,
        &[
            "client-events",
            "--pairs",
            "20",
            "--rate",
            "5",
            "--duration",
            "1",
        ],
    )
    .await;
    let r = &pairs["result"];
    assert_eq!(r["pairs_connected"], 20, "{pairs}");
    assert_eq!(r["delivery_ratio"], 1.0, "{pairs}");
    assert!(r["sent"].as_u64().unwrap() >= 80, "{pairs}");

    let churn = bench(&server, &["churn", "--rate", "100", "--duration", "1"]).await;
    assert_eq!(churn["result"]["success_ratio"], 1.0, "{churn}");
    assert_eq!(churn["result"]["ok"], 100, "{churn}");
    let closed = bench(&server, &["churn", "--concurrency", "8", "--duration", "1"]).await;
    assert_eq!(closed["result"]["failed"], 0, "{closed}");
    assert!(closed["result"]["ok"].as_u64().unwrap() > 50, "{closed}");

    let http = bench(&server, &["http", "--concurrency", "4", "--duration", "1"]).await;
    assert_eq!(http["result"]["failed"], 0, "{http}");
    assert!(
        http["result"]["requests_per_sec"].as_f64().unwrap() > 50.0,
        "{http}"
    );
}
