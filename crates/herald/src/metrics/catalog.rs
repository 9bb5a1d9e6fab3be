//! Every metric Herald exports, in one table: name as exposed, type, labels, help. The
//! registry takes its help texts from here, a test checks that `/metrics` shows exactly
//! these names, and another that docs/metrics.md lists each of them.

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// As exposed (counters end in `_total`).
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static str,
    pub help: &'static str,
    /// Shown only in a cluster.
    pub cluster_only: bool,
}

const fn m(
    name: &'static str,
    kind: &'static str,
    labels: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        kind,
        labels,
        help,
        cluster_only: false,
    }
}

const fn c(name: &'static str, kind: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        kind,
        labels: "",
        help,
        cluster_only: true,
    }
}

pub const CATALOG: &[Spec] = &[
    // Connections.
    m(
        "herald_connections",
        "gauge",
        "app_id",
        "Open WebSocket connections on this node",
    ),
    m(
        "herald_connections_opened_total",
        "counter",
        "app_id",
        "WebSocket connections admitted",
    ),
    m(
        "herald_connections_closed_total",
        "counter",
        "app_id, code",
        "WebSocket connections ended, by close code (client: the client closed or went away)",
    ),
    m(
        "herald_slow_consumers_closed_total",
        "counter",
        "app_id",
        "Connections closed with 4100: outbox full or client not reading",
    ),
    m(
        "herald_client_events_rate_limited_total",
        "counter",
        "app_id",
        "Client events refused with 4301 (over max_client_events_per_second)",
    ),
    // Messages.
    m(
        "herald_messages_received_total",
        "counter",
        "app_id, kind",
        "Messages published on this node: api_event (HTTP API, one per channel), client_event, internal (presence, counts, watchlist)",
    ),
    m(
        "herald_messages_received_bytes_total",
        "counter",
        "app_id, kind",
        "Frame bytes of the messages published on this node",
    ),
    m(
        "herald_messages_delivered_total",
        "counter",
        "app_id, kind",
        "Message copies queued to sockets on this node (from any node)",
    ),
    m(
        "herald_messages_delivered_bytes_total",
        "counter",
        "app_id, kind",
        "Frame bytes queued to sockets on this node",
    ),
    m(
        "herald_delivery_latency_seconds",
        "histogram",
        "",
        "From publish on this node (or arrival from another node) to the frame being taken by its connection's writer (the socket write itself, microseconds, not included)",
    ),
    // Channels.
    m(
        "herald_subscriptions",
        "gauge",
        "app_id, channel_kind",
        "Channel subscriptions on this node, by channel kind",
    ),
    m(
        "herald_occupied_channels",
        "gauge",
        "app_id",
        "Channels with a subscriber on this node",
    ),
    m(
        "herald_presence_members",
        "gauge",
        "app_id",
        "Distinct users per presence channel on this node, summed over channels",
    ),
    // HTTP.
    m(
        "herald_http_requests_total",
        "counter",
        "endpoint, status",
        "HTTP requests answered, by route and status (WebSocket upgrades not included)",
    ),
    m(
        "herald_http_request_duration_seconds",
        "histogram",
        "endpoint",
        "Time to answer an HTTP request, by route",
    ),
    m(
        "herald_pending_connections_refused_total",
        "counter",
        "",
        "Connections closed at accept: their IP had max_pending_connections_per_ip connections not (yet) upgraded",
    ),
    m(
        "herald_http_header_timeouts_total",
        "counter",
        "",
        "HTTP connections closed because a request's headers took longer than header_read_timeout",
    ),
    m(
        "herald_http_body_timeouts_total",
        "counter",
        "",
        "HTTP API requests answered 408 because the body took longer than body_read_timeout",
    ),
    m(
        "herald_http_request_timeouts_total",
        "counter",
        "",
        "HTTP connections closed because a request was not answered within body_read_timeout plus 5 s",
    ),
    m(
        "herald_http_keepalive_timeouts_total",
        "counter",
        "",
        "Idle keep-alive HTTP connections closed after keepalive_timeout",
    ),
    m(
        "herald_accept_errors_total",
        "counter",
        "",
        "Failed accepts (EMFILE and the like back off, 10 ms doubling to 1 s)",
    ),
    m(
        "herald_admin_auth_failures_total",
        "counter",
        "",
        "Dashboard and /admin requests with a wrong token (each also counts against the per-IP limit)",
    ),
    // Webhooks.
    m(
        "herald_webhooks_queued_total",
        "counter",
        "app_id",
        "Webhook events emitted for a target (before the settle windows)",
    ),
    m(
        "herald_webhooks_delivered_total",
        "counter",
        "app_id",
        "Webhook events their receiver accepted (2xx)",
    ),
    m(
        "herald_webhook_attempts_failed_total",
        "counter",
        "app_id",
        "Webhook events whose delivery attempt failed (each is retried)",
    ),
    m(
        "herald_webhooks_dead_lettered_total",
        "counter",
        "app_id",
        "Webhook events that ran out of retries",
    ),
    m(
        "herald_webhooks_dropped_total",
        "counter",
        "",
        "Webhook events dropped: the in-memory queue was full, the app had max_pending events waiting, or the outbox could not be written",
    ),
    m(
        "herald_webhooks_collapsed_total",
        "counter",
        "",
        "Webhook events never stored because an opposite change followed within the settle window (counted in pairs)",
    ),
    m(
        "herald_tls_handshake_failures_total",
        "counter",
        "",
        "TLS handshakes that failed, plain HTTP sent to the TLS port included (a handshake past header_read_timeout counts as a header timeout)",
    ),
    m(
        "herald_tls_certificate_reloads_total",
        "counter",
        "",
        "Times the TLS certificate was reloaded (SIGHUP or changed files)",
    ),
    m(
        "herald_tls_certificate_reload_failures_total",
        "counter",
        "",
        "Reloads of the TLS certificate that failed; the previous certificate stayed in use",
    ),
    m(
        "herald_ip_connections_limited_total",
        "counter",
        "",
        "WebSocket connections refused with 4301: their client IP opened more than max_connections_per_second_per_ip",
    ),
    m(
        "herald_ip_api_requests_limited_total",
        "counter",
        "",
        "HTTP API requests answered 429: their client IP sent more than max_api_requests_per_second_per_ip",
    ),
    m(
        "herald_app_api_events_limited_total",
        "counter",
        "",
        "HTTP API event requests answered 429 (or 400 when larger than one second's budget): the app is over max_api_events_per_second",
    ),
    m(
        "herald_app_api_reads_limited_total",
        "counter",
        "",
        "HTTP API read requests answered 429: the app is over max_api_reads_per_second",
    ),
    m(
        "herald_app_daily_quota_refused_total",
        "counter",
        "",
        "HTTP API requests (429) and client events (error frame) refused: the app's max_messages_per_day is used up",
    ),
    m(
        "herald_capacity_refused_total",
        "counter",
        "",
        "WebSocket connections refused with 4100: the node is at max_connections or above max_memory_mb",
    ),
    m(
        "herald_webhook_queue_depth",
        "gauge",
        "",
        "Webhook events waiting in memory to be stored in the outbox",
    ),
    m(
        "herald_webhook_outbox_pending",
        "gauge",
        "app_id",
        "Webhook events waiting in the outbox for delivery (dead letters not counted); refreshed every 5 s",
    ),
    m(
        "herald_webhook_requests_total",
        "counter",
        "app_id",
        "Webhook requests made (one per POST, whatever the outcome): the webhook calls of usage metering",
    ),
    m(
        "herald_webhook_outbox_oldest_seconds",
        "gauge",
        "",
        "Age of the oldest webhook event waiting in the outbox; refreshed every 5 s",
    ),
    m(
        "herald_webhook_request_duration_seconds",
        "histogram",
        "",
        "Time one webhook request took, whatever its outcome",
    ),
    m(
        "herald_webhook_delivery_latency_seconds",
        "histogram",
        "",
        "From a webhook event's creation to its receiver's 2xx (settle windows and retries included)",
    ),
    // Usage, as metered for billing (also in usage.sqlite3 and the dashboard).
    m(
        "herald_usage_messages_today",
        "gauge",
        "app_id",
        "Billable messages today (UTC) on this node: one per message delivered to a connection plus one per API publish; survives restarts when a data directory is in use",
    ),
    m(
        "herald_usage_peak_connections_today",
        "gauge",
        "app_id",
        "Most concurrent connections on this node today (UTC)",
    ),
    m(
        "herald_usage_webhook_calls_today",
        "gauge",
        "app_id",
        "Webhook requests made by this node today (UTC)",
    ),
    // Process.
    m(
        "process_resident_memory_bytes",
        "gauge",
        "",
        "Resident memory size in bytes",
    ),
    m(
        "process_virtual_memory_bytes",
        "gauge",
        "",
        "Virtual memory size in bytes",
    ),
    m("process_open_fds", "gauge", "", "Open file descriptors"),
    m(
        "process_max_fds",
        "gauge",
        "",
        "Limit of open file descriptors",
    ),
    m("process_threads", "gauge", "", "OS threads"),
    m(
        "process_start_time_seconds",
        "gauge",
        "",
        "Start time of the process since the Unix epoch, in seconds",
    ),
    m(
        "process_cpu_seconds_total",
        "counter",
        "",
        "User and system CPU time spent, in seconds",
    ),
    // Cluster.
    c(
        "herald_cluster_messages_published_total",
        "counter",
        "Messages this node handed to the cluster broker",
    ),
    c(
        "herald_cluster_published_bytes_total",
        "counter",
        "Payload bytes this node handed to the cluster broker",
    ),
    c(
        "herald_cluster_messages_unsent_total",
        "counter",
        "Messages for other nodes that could not be sent (broker unreachable or queue full)",
    ),
    c(
        "herald_cluster_messages_received_total",
        "counter",
        "Messages received from the cluster broker",
    ),
    c(
        "herald_cluster_received_bytes_total",
        "counter",
        "Payload bytes received from the cluster broker",
    ),
    c(
        "herald_cluster_messages_dropped_total",
        "counter",
        "Received messages dropped because this node could not keep up",
    ),
    c(
        "herald_cluster_reconnects_total",
        "counter",
        "Times the link to the cluster broker came back",
    ),
    c(
        "herald_cluster_peers",
        "gauge",
        "Other nodes this node hears from",
    ),
    c(
        "herald_cluster_latency_seconds",
        "histogram",
        "From another node's heartbeat being sent to its arrival here (includes clock skew between machines)",
    ),
];

/// The help text of `name` (as exposed, or without its `_total`).
pub fn help(name: &str) -> &'static str {
    CATALOG
        .iter()
        .find(|spec| spec.name == name || spec.name.strip_suffix("_total") == Some(name))
        .map_or("", |spec| spec.help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut names = std::collections::HashSet::new();
        for spec in CATALOG {
            assert!(names.insert(spec.name), "{} twice", spec.name);
            assert_eq!(
                spec.kind == "counter",
                spec.name.ends_with("_total"),
                "{}",
                spec.name
            );
            assert!(
                !spec.help.ends_with('.'),
                "the encoder adds the full stop: {}",
                spec.name
            );
        }
    }

    #[test]
    fn the_docs_list_every_metric() {
        let docs = include_str!("../../../../docs/metrics.md");
        for spec in CATALOG {
            assert!(
                docs.contains(&format!("`{}`", spec.name)),
                "docs/metrics.md lacks {}",
                spec.name
            );
        }
    }
}
