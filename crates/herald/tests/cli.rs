//! The `herald` binary: configuration errors, the development-credentials guard, the
//! listening line, environment apps and SIGTERM.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TestClient;

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for var in [
        "HERALD_CONFIG",
        "HERALD_HOST",
        "HERALD_PORT",
        "HERALD_APP_ID",
        "HERALD_APP_KEY",
        "HERALD_APP_SECRET",
    ] {
        command.env_remove(var);
    }
    command
}

/// Starts `herald` and reads the port from its listening line.
fn start(mut command: Command) -> (Child, u16) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would fail the server's next line (the dev app banner).
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    (child, port)
}

#[test]
fn help_documents_every_setting() {
    let output = herald().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in [
        "activity_timeout",
        "pong_timeout",
        "max_frame_bytes",
        "outbox_capacity",
        "enable_client_messages",
        "max_connections",
        "max_presence_members",
        "subscription_error_events",
        "webhook_batching",
        "removal_delay_ms",
        "HERALD_APP_SECRET",
        "--allow-dev-credentials",
        "trusted_proxies",
        "max_connections_per_second_per_ip",
        "max_memory_mb",
        "max_messages_per_day",
        "HERALD_TLS_CERT",
        "--tls-cert",
        "--log-format",
        "[metrics]",
    ] {
        assert!(help.contains(setting), "--help lacks {setting}");
    }
}

#[test]
fn a_bad_configuration_lists_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nport = 99999\ncolour = 1\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"\"\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let output = herald()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "server.port",
        "server.colour",
        "secret is empty",
        "duplicate app id",
        "duplicate app key",
    ] {
        assert!(stderr.contains(problem), "missing {problem}: {stderr}");
    }
}

#[test]
fn dev_credentials_refuse_a_public_address() {
    let output = herald()
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-dev-credentials"), "{stderr}");
}

#[tokio::test]
async fn environment_apps_replace_the_dev_app_and_sigterm_stops_cleanly() {
    let mut command = herald();
    command
        .args(["--port", "0"])
        .env("HERALD_APP_ID", "77")
        .env("HERALD_APP_KEY", "env-key")
        .env("HERALD_APP_SECRET", "env-secret");
    let (mut child, port) = start(command);
    let mut client = TestClient::connect(&format!("ws://127.0.0.1:{port}/app/env-key")).await;
    let mut ws = support::open(&format!("ws://127.0.0.1:{port}/app/app-key")).await;
    let refused = support::next_frame(&mut ws).await.unwrap();
    assert!(
        refused.data.unwrap().get().contains("4001"),
        "dev app is gone"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let (code, _) = client.expect_error().await;
    assert_eq!(code, Some(4200));
    assert_eq!(client.expect_close().await, 4200);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_banner_tells_the_dev_apps_real_client_event_setting_and_logs_have_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.toml");
    std::fs::write(
        &path,
        "[server]\nport = 0\n[[apps]]\nid = \"1\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nenable_client_messages = false\n",
    )
    .unwrap();
    let mut child = herald()
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("(client events off)"), "{line}");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("development only") {
        assert!(stderr.read_line(&mut log).unwrap() > 0, "{log}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in a redirected log: {log:?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = herald()
        .args(["--port", "0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let object: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(object["level"], "WARN", "{line}");
    assert!(object["fields"]["message"].is_string(), "{line}");
}

#[test]
fn webhook_commands_offer_only_the_configuration_flag() {
    for args in [
        vec!["webhooks", "--help"],
        vec!["webhooks", "list-failed", "--help"],
        vec!["webhooks", "replay", "--help"],
    ] {
        let output = herald().args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("--config"), "{args:?}: {help}");
        for flag in ["--host", "--port", "--allow-dev-credentials"] {
            assert!(!help.contains(flag), "{args:?} lists {flag}: {help}");
        }
    }
    let refused = herald()
        .args(["--port", "1", "webhooks", "list-failed"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("apply to `herald serve` only"));
}

#[test]
fn the_configuration_flag_works_before_and_after_serve() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\ncolour = 1\n").unwrap();
    for args in [
        vec!["--config", "F", "serve"],
        vec!["serve", "--config", "F"],
    ] {
        let args: Vec<&std::ffi::OsStr> = args
            .iter()
            .map(|a| {
                if *a == "F" {
                    path.as_os_str()
                } else {
                    a.as_ref()
                }
            })
            .collect();
        let output = herald().args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("server.colour"),
            "{args:?} did not read the file: {stderr}"
        );
    }
    let output = herald().env("HERALD_CONFIG", &path).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.colour"));
}

#[test]
fn listing_dead_letters_without_an_outbox_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for action in [vec!["list-failed"], vec!["replay", "--all"]] {
        let output = herald()
            .current_dir(dir.path())
            .arg("webhooks")
            .args(&action)
            .output()
            .unwrap();
        assert!(output.status.success(), "{action:?}: {output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(
                "no webhook outbox at herald-data/webhooks.sqlite3: nothing has been stored yet"
            ),
            "{stdout}"
        );
        assert!(
            !dir.path().join("herald-data").exists(),
            "{action:?} created it"
        );
    }
}

#[tokio::test]
async fn the_development_server_writes_nothing_in_its_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = herald();
    command.current_dir(dir.path()).args(["--port", "0"]);
    let (mut child, port) = start(command);
    let api = support::ApiClient {
        base: format!("http://127.0.0.1:{port}"),
        app_id: "1".into(),
        key: "app-key".into(),
        secret: "app-secret".into(),
        http: reqwest::Client::new(),
    };
    let mut client = TestClient::connect(&format!("ws://127.0.0.1:{port}/app/app-key")).await;
    client.subscribe("metered").await;
    api.trigger(&["metered"], "tick", "1").await;
    client.expect("tick").await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(written.is_empty(), "the dev server wrote {written:?}");
}
