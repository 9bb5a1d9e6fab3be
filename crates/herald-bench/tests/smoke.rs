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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_spread_over_servers_at_fixed_rates() {
    let server = start().await;
    let both = format!("{},{}", server.url, server.url);
    let f = bench(
        &server,
        &[
            "fanout",
            "--subscribers",
            "200",
            "--subscribe-to",
            &both,
            "--publish-to",
            &server.url,
            "--rates",
            "20,40",
            "--duration",
            "1",
        ],
    )
    .await;
    assert_eq!(f["connect"]["connected"], 200, "{f}");
    assert_eq!(f["params"]["processes"], 2, "{f}");
    let steps = f["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{f}");
    for (step, rate) in steps.iter().zip([20.0, 40.0]) {
        assert_eq!(step["rate"], rate, "{step}");
        assert_eq!(step["delivery_ratio"], 1.0, "{step}");
        assert_eq!(step["cpu"]["nodes"].as_array().unwrap().len(), 1, "{step}");
        // The (in-process) server used some CPU for its 200 × rate deliveries.
        let cost = step["server_cpu_us_per_delivery"].as_f64().unwrap_or(0.0);
        assert!(cost > 0.0 && cost < 100_000.0, "{step}");
        assert!(
            step["server_cpu_seconds"].as_f64().unwrap_or(0.0) > 0.0,
            "{step}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_members_churn_and_rest_are_counted() {
    let server = start().await;
    let p = bench(
        &server,
        &[
            "presence",
            "--subscribe-to",
            &server.url,
            "--channels",
            "10",
            "--members",
            "4",
            "--settle",
            "0.5",
            "--rest",
            "1",
            "--churn",
            "2",
            "--churn-rate",
            "20",
            "--churners",
            "4",
        ],
    )
    .await;
    assert_eq!(p["connect"]["connected"], 40, "{p}");
    assert_eq!(p["connect"]["failed"], 0, "{p}");
    assert_eq!(p["rest"]["member_added"], 0, "{p}");
    assert_eq!(p["rest"]["member_removed"], 0, "{p}");
    let churn = &p["churn"];
    assert!(churn["churn"]["joins"].as_u64().unwrap() >= 20, "{p}");
    assert_eq!(churn["churn"]["failed"], 0, "{p}");
    // Every churn join is seen by the 4 members of its channel.
    assert!(churn["member_added"].as_u64().unwrap() >= 4 * 20, "{p}");
    assert!(p["kill"].is_null(), "{p}");
}

/// The kill hook against a stand-in process: members "on" the killed node are really on a
/// live server, so no removal comes and the report must say so rather than pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_kill_reports_missing_removals() {
    let server = start().await;
    let mut standin = Command::new("sleep").arg("60").spawn().unwrap();
    let both = format!("{},{}", server.url, server.url);
    let pid = standin.id().to_string();
    let p = bench(
        &server,
        &[
            "presence",
            "--subscribe-to",
            &both,
            "--server-pid",
            &pid,
            "--channels",
            "5",
            "--members",
            "4",
            "--settle",
            "0.2",
            "--rest",
            "0.5",
            "--churn",
            "0",
            "--kill-node",
            "0",
            "--kill-wait",
            "1",
        ],
    )
    .await;
    let status = standin.wait().unwrap();
    assert!(!status.success(), "the stand-in was not killed: {status:?}");
    let k = &p["kill"];
    // Slots 0 and 2 on node 0, 1 and 3 on node 1: 2 x 2 pairs in each of 5 channels.
    assert_eq!(k["expected"], 20, "{p}");
    assert_eq!(k["observed"], 0, "{p}");
    assert_eq!(k["complete"], false, "{p}");
    assert_eq!(k["within_bound"], false, "{p}");
}

#[test]
fn presence_refuses_a_kill_without_matching_pids() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args([
            "presence",
            "--subscribe-to",
            "http://127.0.0.1:1",
            "--kill-node",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--kill-node 1 needs one --server-pid"),
        "{stderr}"
    );
}

#[test]
fn subscribe_to_and_publish_to_refuse_non_loopback_servers() {
    let cases: [&[&str]; 2] = [
        &[
            "fanout",
            "--subscribe-to",
            "http://127.0.0.1:1,http://192.0.2.1:80",
        ],
        &[
            "fanout",
            "--publish-to",
            "http://192.0.2.1:80",
            "--subscribers",
            "0",
        ],
    ];
    for args in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("only targets loopback"),
            "{args:?}: {stderr}"
        );
    }
}
