//! Herald clusters for tests: N real servers (each on port 0, each in a runtime of its own
//! so one can be killed outright) joined through the in-memory broker, the machine's Redis
//! or NATS, or a private broker process that a test may stop.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use herald::cluster::ClusterSettings;
use herald::cluster::transport::{Driver, MemoryBroker};
use herald::config::Config;
use tokio_util::sync::CancellationToken;

use super::brokers::{self, PrivateBroker};
use super::{APPS, ApiClient, KEY, SECRET, TestClient};

/// Which broker joins the nodes.
#[derive(Clone, Debug)]
pub enum Backend {
    Memory(MemoryBroker),
    Redis(String),
    Nats(String),
}

impl Backend {
    pub fn memory() -> Self {
        Self::Memory(MemoryBroker::new())
    }

    pub fn shared_redis() -> Self {
        Self::Redis(brokers::require_shared_redis().to_owned())
    }

    pub fn shared_nats() -> Self {
        Self::Nats(brokers::require_shared_nats().to_owned())
    }

    /// A private broker of the same kind as `self` (memory needs none), for outage tests.
    pub fn private(&self) -> (Self, Option<PrivateBroker>) {
        match self {
            Self::Memory(_) => (Self::memory(), None),
            Self::Redis(_) => {
                let broker = PrivateBroker::redis(&[]);
                (Self::Redis(broker.url("redis")), Some(broker))
            }
            Self::Nats(_) => {
                let broker = PrivateBroker::nats(&[]);
                (Self::Nats(broker.url("nats")), Some(broker))
            }
        }
    }

    fn driver(&self) -> (Driver, String) {
        match self {
            Self::Memory(broker) => (Driver::Memory(broker.clone()), String::new()),
            Self::Redis(url) => (Driver::Redis, url.clone()),
            Self::Nats(url) => (Driver::Nats, url.clone()),
        }
    }
}

/// One node: a server in its own runtime on its own thread.
pub struct TestNode {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestNode {
    pub fn ws_url(&self, key: &str) -> String {
        format!(
            "ws://{}/app/{key}?protocol=7&client=js&version=8.4.0",
            self.addr
        )
    }

    pub async fn client(&self) -> TestClient {
        TestClient::connect(&self.ws_url(KEY)).await
    }

    pub fn api(&self) -> ApiClient {
        ApiClient {
            base: format!("http://{}", self.addr),
            app_id: "1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Status and body of `GET /ready`.
    pub async fn ready(&self) -> (u16, String) {
        match reqwest::get(format!("http://{}/ready", self.addr)).await {
            Ok(response) => (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Stops the node as SIGKILL would: no goodbye, no cleanup; its sockets just close.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Stops the node as SIGTERM would (4200 to clients, goodbye to the cluster) and waits
    /// for it to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.kill();
    }

    pub fn is_running(&self) -> bool {
        self.runtime.is_some()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N nodes on one broker, under a prefix of their own.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub backend: Backend,
    pub prefix: String,
    extra: String,
    apps: String,
    /// Each node's webhook outbox.
    dirs: Vec<tempfile::TempDir>,
}

/// Fast protocol timings for tests: heartbeats every second, dead after 3.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

impl TestCluster {
    pub async fn start(count: usize, backend: Backend) -> Self {
        Self::with_config(count, backend, "").await
    }

    /// `extra` is TOML placed before the apps (e.g. a `[webhooks]` table); `APPS` follow.
    pub async fn with_config(count: usize, backend: Backend, extra: &str) -> Self {
        Self::with_apps(count, backend, extra, APPS).await
    }

    /// `extra` (e.g. `[webhooks]` settings) then `apps`, the `[[apps]]` blocks.
    pub async fn with_apps(count: usize, backend: Backend, extra: &str, apps: &str) -> Self {
        let prefix = format!("test-{:016x}", rand::random::<u64>());
        let mut cluster = Self {
            nodes: Vec::new(),
            backend,
            prefix,
            extra: extra.to_owned(),
            apps: apps.to_owned(),
            dirs: Vec::new(),
        };
        for _ in 0..count {
            cluster.add_node().await;
        }
        cluster.wait_ready().await;
        cluster
    }

    /// Starts one more node.
    pub async fn add_node(&mut self) -> usize {
        let mut config = Config::from_toml(&format!("{}\n{}", self.extra, self.apps))
            .expect("test config is valid");
        let dir = tempfile::tempdir().expect("temp dir");
        config.webhooks.data_dir = dir.path().to_owned();
        self.dirs.push(dir);
        let (driver, url) = self.backend.driver();
        config.cluster = Some(ClusterSettings {
            driver,
            url,
            prefix: self.prefix.clone(),
            node_id: Some(format!("node-{}", self.nodes.len())),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: NODE_TIMEOUT,
            start_degraded: true,
        });
        let joined_before = self.memory_nodes();
        self.nodes.push(spawn_node(config));
        // On the memory broker, node i is the i-th to join (tests cut nodes off by index).
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.memory_nodes() == joined_before && joined_before.is_some() {
            assert!(
                Instant::now() < deadline,
                "node never joined the memory broker"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.nodes.len() - 1
    }

    /// How many nodes joined the memory broker (`None` for Redis and NATS).
    fn memory_nodes(&self) -> Option<usize> {
        match &self.backend {
            Backend::Memory(broker) => Some(broker.node_ids().len()),
            _ => None,
        }
    }

    /// Waits until every running node answers `/ready` with 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            loop {
                let (status, body) = node.ready().await;
                if status == 200 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node never ready: {status} {body}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn spawn_node(config: Config) -> TestNode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let stop = shutdown.clone();
    let task = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        herald::run(config, listener, stop).await
    });
    TestNode {
        addr,
        shutdown,
        runtime: Some(runtime),
        task: Some(task),
    }
}
