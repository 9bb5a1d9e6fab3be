//! herald-bench: load generator for any Pusher-protocol server (Herald, Sockudo, Soketi).
//!
//! Layout: `ws` (lean client framing), `http` (signed API), `hist` (latency histograms),
//! `procstat` (CPU/RSS from /proc), `worker` (subscriber processes), `publish` (fanout,
//! channels, ramp), `sessions` (connections, client-events), `churn`, `trigger` (http),
//! `report` (human and JSON output), `presence` (presence at scale on a cluster, with churn
//! and a node kill), `brokerbytes` (bytes each node moves to and from its cluster broker).

mod brokerbytes;
mod churn;
mod floor;
mod hist;
mod http;
mod presence;
mod procstat;
mod publish;
mod publisher;
mod report;
mod sessions;
mod step;
mod trigger;
mod worker;
mod ws;

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

/// Load generator for Pusher Channels protocol servers. Targets loopback only.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

/// Options every scenario shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Server base URL (ws:// or http://); must be a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:6001")]
    pub url: String,
    #[arg(long, default_value = "1")]
    pub app_id: String,
    #[arg(long, default_value = "app-key")]
    pub key: String,
    #[arg(long, default_value = "app-secret")]
    pub secret: String,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Server process id: its RSS and CPU are reported too. Several (repeated or
    /// comma-separated), for the nodes of a cluster: their sum and each one.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Spread the subscribers over these servers (comma-separated URLs, the nodes of one
    /// cluster) instead of `--url`: worker process k connects to the k-th, round robin.
    #[arg(long, value_delimiter = ',')]
    pub subscribe_to: Vec<String>,
    /// Send the HTTP API requests (triggers) to this server instead of `--url`.
    #[arg(long)]
    pub publish_to: Option<String>,
    /// TCP port(s) of the cluster broker(s) (6379 Redis, 4222 NATS; comma-separated): the
    /// bytes each `--server-pid` exchanges with them are reported (from `ss -tin`).
    #[arg(long, value_delimiter = ',')]
    pub broker_port: Vec<u16>,
    /// Subscriber processes (more are used when needed to stay under 9,000 sockets each).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N subscribed connections, hold them, report connect rate and server memory.
    Connections(sessions::ConnectionsArgs),
    /// N subscribers on one channel; publish R events/s over HTTP; delivery and latency.
    Fanout(publish::FanoutArgs),
    /// N connections spread over M channels; events spread over the channels.
    Channels(publish::ChannelsArgs),
    /// Pairs on private channels exchanging client events; round-trip latency.
    ClientEvents(sessions::PairsArgs),
    /// Connect, subscribe, disconnect at a rate; success ratio and step latencies.
    Churn(churn::ChurnArgs),
    /// Signed trigger requests as fast as C connections allow; requests/s and latency.
    Http(trigger::HttpArgs),
    /// Presence at scale over several nodes: C presence channels x M members spread over
    /// the nodes, churn at a fixed rate, node CPU and broker bytes at rest and under churn,
    /// then SIGKILL of one node and the time to the last `member_removed` elsewhere.
    Presence(presence::PresenceArgs),
    /// Not a scenario: a minimal fan-out server (one pre-encoded frame written to every
    /// socket per trigger) that measures what this machine allows.
    Floor(floor::FloorArgs),
    /// Internal: a subscriber process driven by the parent over stdin/stdout.
    #[command(hide = true)]
    Worker,
}

/// The socket address of a server URL; refuses anything that is not loopback.
pub fn loopback_addr(url: &str) -> Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr = host_port
        .to_socket_addrs()
        .with_context(|| format!("bad server URL {url}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("no IPv4 address for {host_port}"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing to load {addr}: herald-bench only targets loopback addresses");
    }
    Ok(addr)
}

impl Common {
    /// The server's socket address; refuses anything that is not loopback.
    pub fn addr(&self) -> Result<SocketAddr> {
        loopback_addr(&self.url)
    }

    /// Where subscribers connect: every `--subscribe-to` server, or `--url`.
    pub fn subscriber_addrs(&self) -> Result<Vec<SocketAddr>> {
        if self.subscribe_to.is_empty() {
            return Ok(vec![self.addr()?]);
        }
        self.subscribe_to.iter().map(|u| loopback_addr(u)).collect()
    }

    /// The servers' figures (CPU, RSS, broker bytes) over one interval.
    pub fn meter(&self) -> Option<procstat::ServerMeter> {
        procstat::ServerMeter::start(&self.server_pid, &self.broker_port)
    }

    pub fn api(&self) -> Result<http::Api> {
        let addr = match &self.publish_to {
            Some(url) => loopback_addr(url)?,
            None => self.addr()?,
        };
        Ok(http::Api {
            addr,
            app_id: self.app_id.clone(),
            key: self.key.clone(),
            secret: self.secret.clone(),
        })
    }

    pub fn target(&self) -> Result<ws::Target> {
        Ok(ws::Target {
            addr: self.addr()?,
            key: self.key.clone(),
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Scenario::Worker = cli.command {
        // One thread per worker process: the parent runs several of them.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(worker::run_worker());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(procstat::cores().min(4))
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        match cli.command {
            Scenario::Connections(a) => sessions::connections(a).await,
            Scenario::Fanout(a) => publish::fanout(a).await,
            Scenario::Channels(a) => publish::channels(a).await,
            Scenario::ClientEvents(a) => sessions::pairs(a).await,
            Scenario::Churn(a) => churn::churn(a).await,
            Scenario::Http(a) => trigger::http(a).await,
            Scenario::Presence(a) => presence::presence(a).await,
            Scenario::Worker => unreachable!("handled above"),
            Scenario::Floor(a) => floor::floor(a)
                .await
                .map(|()| report::Report::new(false, "floor", "")),
        }
    })?;
    report.print()
}
