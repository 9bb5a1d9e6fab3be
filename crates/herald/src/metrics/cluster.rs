//! The cluster's transport counters, peers and hop latency, read at each scrape once the
//! node has joined a cluster.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::catalog::help;
use crate::cluster::Cluster;

/// What the collector reads.
pub type ClusterSource = Arc<Cluster>;

pub(super) struct ClusterCollector(pub Arc<OnceLock<ClusterSource>>);

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(cluster) = self.0.get() else {
            return Ok(());
        };
        let counts = cluster.transport().stats().counts();
        let counters = [
            ("herald_cluster_messages_published", counts.published),
            ("herald_cluster_published_bytes", counts.published_bytes),
            ("herald_cluster_messages_unsent", counts.publish_dropped),
            ("herald_cluster_messages_received", counts.received),
            ("herald_cluster_received_bytes", counts.received_bytes),
            ("herald_cluster_messages_dropped", counts.inbound_dropped),
            ("herald_cluster_reconnects", counts.reconnects),
        ];
        for (name, value) in counters {
            let counter = ConstCounter::new(value);
            let metric =
                encoder.encode_descriptor(name, help(name), None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let name = "herald_cluster_peers";
        let peers = ConstGauge::new(cluster.peer_count() as i64);
        peers.encode(encoder.encode_descriptor(name, help(name), None, peers.metric_type())?)?;
        let name = "herald_cluster_latency_seconds";
        let latency = cluster.latency();
        latency.encode(encoder.encode_descriptor(name, help(name), None, latency.metric_type())?)
    }
}
