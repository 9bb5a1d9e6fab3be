//! Counters and gauges of one Herald process, named and described in one table, served in the
//! Prometheus text format at `GET /metrics`. Counting is one relaxed atomic add.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::transport::TransportCounts;

/// Every counter Herald keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub slow_consumers_closed: AtomicU64,
    pub api_events_published: AtomicU64,
    pub client_events_relayed: AtomicU64,
    pub frames_queued: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub webhook_attempts_failed: AtomicU64,
    pub webhooks_dead_lettered: AtomicU64,
    pub pending_connections_refused: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub body_timeouts: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub keepalive_timeouts: AtomicU64,
    pub accept_errors: AtomicU64,
    pub webhooks_dropped: AtomicU64,
    pub webhooks_collapsed: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub tls_reloads: AtomicU64,
    pub tls_reload_failures: AtomicU64,
    pub ip_connections_limited: AtomicU64,
    pub ip_api_requests_limited: AtomicU64,
    pub app_api_events_limited: AtomicU64,
    pub app_api_reads_limited: AtomicU64,
    pub app_daily_quota_refused: AtomicU64,
    pub capacity_refused: AtomicU64,
    /// A gauge: set, not added to.
    pub webhook_queue_depth: AtomicU64,
}

type Field = fn(&Metrics) -> &AtomicU64;

/// Name, help text and field of each counter.
const COUNTERS: &[(&str, &str, Field)] = &[
    (
        "herald_connections_opened_total",
        "WebSocket connections admitted.",
        |m| &m.connections_opened,
    ),
    (
        "herald_connections_closed_total",
        "WebSocket connections ended.",
        |m| &m.connections_closed,
    ),
    (
        "herald_slow_consumers_closed_total",
        "Connections closed with 4100 because their outbox was full.",
        |m| &m.slow_consumers_closed,
    ),
    (
        "herald_api_events_published_total",
        "Events published through the HTTP API, counted per channel.",
        |m| &m.api_events_published,
    ),
    (
        "herald_client_events_relayed_total",
        "Client events relayed.",
        |m| &m.client_events_relayed,
    ),
    (
        "herald_frames_queued_total",
        "Event frames queued to subscribers' outboxes.",
        |m| &m.frames_queued,
    ),
    (
        "herald_webhooks_delivered_total",
        "Webhook events their receiver accepted.",
        |m| &m.webhooks_delivered,
    ),
    (
        "herald_webhook_attempts_failed_total",
        "Webhook events whose delivery attempt failed (each is retried).",
        |m| &m.webhook_attempts_failed,
    ),
    (
        "herald_webhooks_dead_lettered_total",
        "Webhook events that ran out of retries.",
        |m| &m.webhooks_dead_lettered,
    ),
    (
        "herald_pending_connections_refused_total",
        "Connections closed at accept: their IP had max_pending_connections_per_ip connections not (yet) upgraded.",
        |m| &m.pending_connections_refused,
    ),
    (
        "herald_http_header_timeouts_total",
        "HTTP connections closed because a request's headers took longer than header_read_timeout.",
        |m| &m.header_timeouts,
    ),
    (
        "herald_http_body_timeouts_total",
        "HTTP API requests answered 408 because the body took longer than body_read_timeout.",
        |m| &m.body_timeouts,
    ),
    (
        "herald_http_request_timeouts_total",
        "HTTP connections closed because a request was not answered within body_read_timeout plus 5 s.",
        |m| &m.request_timeouts,
    ),
    (
        "herald_http_keepalive_timeouts_total",
        "Idle keep-alive HTTP connections closed after keepalive_timeout.",
        |m| &m.keepalive_timeouts,
    ),
    (
        "herald_accept_errors_total",
        "Failed accepts (EMFILE and the like back off, 10 ms doubling to 1 s).",
        |m| &m.accept_errors,
    ),
    (
        "herald_webhooks_dropped_total",
        "Webhook events dropped: the in-memory queue was full, the app had max_pending events waiting, or the outbox could not be written.",
        |m| &m.webhooks_dropped,
    ),
    (
        "herald_webhooks_collapsed_total",
        "Webhook events never stored because an opposite change followed within the settle window (counted in pairs).",
        |m| &m.webhooks_collapsed,
    ),
    (
        "herald_tls_handshake_failures_total",
        "TLS handshakes that failed, plain HTTP sent to the TLS port included (a handshake past header_read_timeout counts as a header timeout).",
        |m| &m.tls_handshake_failures,
    ),
    (
        "herald_tls_certificate_reloads_total",
        "Times the TLS certificate was reloaded (SIGHUP or changed files).",
        |m| &m.tls_reloads,
    ),
    (
        "herald_tls_certificate_reload_failures_total",
        "Reloads of the TLS certificate that failed; the previous certificate stayed in use.",
        |m| &m.tls_reload_failures,
    ),
    (
        "herald_ip_connections_limited_total",
        "WebSocket connections refused with 4301: their client IP opened more than max_connections_per_second_per_ip.",
        |m| &m.ip_connections_limited,
    ),
    (
        "herald_ip_api_requests_limited_total",
        "HTTP API requests answered 429: their client IP sent more than max_api_requests_per_second_per_ip.",
        |m| &m.ip_api_requests_limited,
    ),
    (
        "herald_app_api_events_limited_total",
        "HTTP API event requests answered 429 (or 400 when larger than one second's budget): the app is over max_api_events_per_second.",
        |m| &m.app_api_events_limited,
    ),
    (
        "herald_app_api_reads_limited_total",
        "HTTP API read requests answered 429: the app is over max_api_reads_per_second.",
        |m| &m.app_api_reads_limited,
    ),
    (
        "herald_app_daily_quota_refused_total",
        "HTTP API requests (429) and client events (error frame) refused: the app's max_messages_per_day is used up.",
        |m| &m.app_daily_quota_refused,
    ),
    (
        "herald_capacity_refused_total",
        "WebSocket connections refused with 4100: the node is at max_connections or above max_memory_mb.",
        |m| &m.capacity_refused,
    ),
];

/// Name, help text and field of each gauge.
const GAUGES: &[(&str, &str, Field)] = &[(
    "herald_webhook_queue_depth",
    "Webhook events waiting in memory to be stored in the outbox.",
    |m| &m.webhook_queue_depth,
)];

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with the open connections of each app as a gauge.
    pub fn render(&self, open_connections: &[(String, usize)]) -> String {
        let mut text = String::new();
        for (name, help, field) in COUNTERS {
            let value = field(self).load(Ordering::Relaxed);
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        }
        for (name, help, field) in GAUGES {
            let value = field(self).load(Ordering::Relaxed);
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        }
        text.push_str("# HELP herald_connections Open WebSocket connections per app.\n");
        text.push_str("# TYPE herald_connections gauge\n");
        for (app, count) in open_connections {
            let _ = writeln!(
                text,
                "herald_connections{{app_id=\"{}\"}} {count}",
                escape(app)
            );
        }
        text
    }
}

/// The cluster's counters: what crossed the broker and what could not.
pub fn render_cluster(counts: &TransportCounts, peers: usize) -> String {
    let rows: [(&str, &str, &str, u64); 7] = [
        (
            "herald_cluster_messages_published_total",
            "counter",
            "Messages this node handed to the cluster broker.",
            counts.published,
        ),
        (
            "herald_cluster_messages_unsent_total",
            "counter",
            "Messages for other nodes that could not be sent (broker unreachable or queue full).",
            counts.publish_dropped,
        ),
        (
            "herald_cluster_messages_received_total",
            "counter",
            "Messages received from the cluster broker.",
            counts.received,
        ),
        (
            "herald_cluster_received_bytes_total",
            "counter",
            "Payload bytes received from the cluster broker.",
            counts.received_bytes,
        ),
        (
            "herald_cluster_messages_dropped_total",
            "counter",
            "Received messages dropped because this node could not keep up.",
            counts.inbound_dropped,
        ),
        (
            "herald_cluster_reconnects_total",
            "counter",
            "Times the link to the cluster broker came back.",
            counts.reconnects,
        ),
        (
            "herald_cluster_peers",
            "gauge",
            "Other nodes this node hears from.",
            peers as u64,
        ),
    ];
    let mut text = String::new();
    for (name, kind, help, value) in rows {
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
    text
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_help_and_type() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.webhook_attempts_failed, 3);
        let text = metrics.render(&[("1".into(), 2)]);
        assert_eq!(
            text.matches("# TYPE").count(),
            COUNTERS.len() + GAUGES.len() + 1
        );
        assert!(text.contains("herald_webhook_attempts_failed_total 3\n"));
        assert!(text.contains("herald_connections{app_id=\"1\"} 2\n"));
    }
}
