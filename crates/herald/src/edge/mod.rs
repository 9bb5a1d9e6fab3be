//! Protection at the edge: who a client is (behind trusted proxies), how fast one client IP
//! may open WebSockets and call the HTTP API, each app's rates and daily quota, and the
//! node's connection and memory ceilings. It counts and decides; callers answer (4301,
//! 4100, 429).

mod capacity;
mod client_ip;
mod per_app;
mod per_ip;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

pub use capacity::{ABOVE_MAX_MEMORY, AT_MAX_CONNECTIONS, Capacity, NodeSlot};
pub use client_ip::{ClientIpHeader, TrustedProxies, parse_network};
pub use per_app::{AppGates, Limited};
pub use per_ip::{IpRate, retry_after_secs};

/// Seconds between sweeps of the per-IP limiters' idle addresses.
const FORGET_EVERY: u64 = 5;

/// The `[server]` settings of this module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Peers whose `X-Forwarded-For` / `Forwarded` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub client_ip_header: ClientIpHeader,
    /// New WebSocket connections per second from one client IP; 0 = no limit.
    pub max_connections_per_second_per_ip: u32,
    /// HTTP API requests per second from one client IP; 0 = no limit.
    pub max_api_requests_per_second_per_ip: u32,
    /// Open WebSocket connections on this node; 0 = no limit.
    pub max_connections: usize,
    /// Resident memory of this process above which new connections are refused; 0 = off.
    pub max_memory_mb: u64,
}

/// The edge state of one node.
#[derive(Debug)]
pub struct Edge {
    proxies: TrustedProxies,
    /// New WebSocket connections per client IP.
    pub connections: IpRate,
    /// HTTP API requests per client IP.
    pub api_requests: IpRate,
    pub apps: AppGates,
    pub capacity: Arc<Capacity>,
    ticks: AtomicU64,
}

impl Edge {
    pub fn new(settings: &EdgeSettings) -> Self {
        Self {
            proxies: TrustedProxies::new(
                settings.trusted_proxies.clone(),
                settings.client_ip_header,
            ),
            connections: IpRate::new(settings.max_connections_per_second_per_ip),
            api_requests: IpRate::new(settings.max_api_requests_per_second_per_ip),
            apps: AppGates::default(),
            capacity: Capacity::new(settings.max_connections, settings.max_memory_mb),
            ticks: AtomicU64::new(0),
        }
    }

    /// The client's address for a request the listener accepted (`None` for a request
    /// that did not come through it, as in unit tests).
    pub fn client_ip(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let ConnectInfo(peer) = extensions.get::<ConnectInfo<SocketAddr>>()?;
        Some(self.client_ip_of(*peer, headers))
    }

    /// The client's address for a request that arrived from `peer`.
    pub fn client_ip_of(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        self.proxies.client_ip(peer.ip(), headers)
    }

    /// Once a second: sample memory; every few seconds, forget idle addresses.
    pub fn tick(&self) {
        self.capacity.sample();
        if self
            .ticks
            .fetch_add(1, Relaxed)
            .is_multiple_of(FORGET_EVERY)
        {
            self.connections.forget_idle();
            self.api_requests.forget_idle();
        }
    }
}
