//! Every metric of one Herald process, registered with `prometheus-client` and served in
//! the Prometheus text format at `GET /metrics`. Names, types, labels and help live in one
//! table ([`catalog::CATALOG`]). Hot paths add to pre-resolved atomics: per-app handles are
//! resolved at startup ([`AppMetrics`]) and nothing is labelled by channel or socket.

mod app;
pub mod catalog;
mod cluster;
pub mod histogram;
pub mod process;
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use app::AppFamilies;
pub use app::{AppMetrics, MessageKind, channel_kind_label, close_code_label};
pub use cluster::ClusterSource;
pub use histogram::DurationHistogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

type HttpHistograms = Family<EndpointLabel, DurationHistogram, fn() -> DurationHistogram>;

fn fast_histogram() -> DurationHistogram {
    DurationHistogram::new(histogram::FAST)
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    apps: HashMap<String, AppMetrics>,
    /// For an id that is not configured (never labelled, never shown).
    detached: AppMetrics,
    cluster: Arc<OnceLock<ClusterSource>>,
    usage: Arc<OnceLock<Arc<crate::usage::UsageStore>>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HttpHistograms,
    /// Every HTTP request, for the dashboard's history.
    pub http_total: Counter,
    pub admin_auth_failures: Counter,
    pub delivery_latency: DurationHistogram,
    pub pending_connections_refused: Counter,
    pub header_timeouts: Counter,
    pub body_timeouts: Counter,
    pub request_timeouts: Counter,
    pub keepalive_timeouts: Counter,
    pub accept_errors: Counter,
    pub webhooks_dropped: Counter,
    pub webhooks_collapsed: Counter,
    pub tls_handshake_failures: Counter,
    pub tls_reloads: Counter,
    pub tls_reload_failures: Counter,
    pub ip_connections_limited: Counter,
    pub ip_api_requests_limited: Counter,
    pub app_api_events_limited: Counter,
    pub app_api_reads_limited: Counter,
    pub app_daily_quota_refused: Counter,
    pub capacity_refused: Counter,
    pub webhook_queue_depth: Gauge,
    pub webhook_outbox_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub webhook_request: DurationHistogram,
    pub webhook_latency: DurationHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new::<&str>(&[])
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Registers `metric` under its catalog name (without the `_total` the encoder adds).
fn register(registry: &mut Registry, name: &'static str, metric: impl Metric) {
    let help = catalog::help(name);
    debug_assert!(!help.is_empty(), "{name} is not in the catalog");
    let bare = name.strip_suffix("_total").unwrap_or(name);
    registry.register(bare, help, metric);
}

impl Metrics {
    /// Metrics for the configured apps' ids.
    pub fn new<S: AsRef<str>>(app_ids: &[S]) -> Self {
        let mut registry = Registry::default();
        let families = AppFamilies::default();
        let apps = app_ids
            .iter()
            .map(|id| {
                let id = id.as_ref();
                (id.to_owned(), AppMetrics::resolve(&families, id))
            })
            .collect();
        let metrics = Self {
            registry: Registry::default(),
            apps,
            detached: AppMetrics::default(),
            cluster: Arc::default(),
            usage: Arc::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(fast_histogram),
            http_total: Counter::default(),
            admin_auth_failures: Counter::default(),
            delivery_latency: fast_histogram(),
            pending_connections_refused: Counter::default(),
            header_timeouts: Counter::default(),
            body_timeouts: Counter::default(),
            request_timeouts: Counter::default(),
            keepalive_timeouts: Counter::default(),
            accept_errors: Counter::default(),
            webhooks_dropped: Counter::default(),
            webhooks_collapsed: Counter::default(),
            tls_handshake_failures: Counter::default(),
            tls_reloads: Counter::default(),
            tls_reload_failures: Counter::default(),
            ip_connections_limited: Counter::default(),
            ip_api_requests_limited: Counter::default(),
            app_api_events_limited: Counter::default(),
            app_api_reads_limited: Counter::default(),
            app_daily_quota_refused: Counter::default(),
            capacity_refused: Counter::default(),
            webhook_queue_depth: Gauge::default(),
            webhook_outbox_oldest: Gauge::default(),
            webhook_request: DurationHistogram::new(histogram::REQUEST),
            webhook_latency: DurationHistogram::new(histogram::SLOW),
        };
        let r = &mut registry;
        let f = families;
        register(r, "herald_connections", f.connections);
        register(r, "herald_connections_opened_total", f.opened);
        register(r, "herald_connections_closed_total", f.closed);
        register(r, "herald_slow_consumers_closed_total", f.slow_consumers);
        register(r, "herald_client_events_rate_limited_total", f.rate_limited);
        register(r, "herald_messages_received_total", f.received);
        register(r, "herald_messages_received_bytes_total", f.received_bytes);
        register(r, "herald_messages_delivered_total", f.delivered);
        register(
            r,
            "herald_messages_delivered_bytes_total",
            f.delivered_bytes,
        );
        let m = &metrics;
        register(
            r,
            "herald_delivery_latency_seconds",
            m.delivery_latency.clone(),
        );
        register(r, "herald_subscriptions", f.subscriptions);
        register(r, "herald_occupied_channels", f.occupied);
        register(r, "herald_presence_members", f.members);
        register(r, "herald_http_requests_total", m.http_requests.clone());
        register(
            r,
            "herald_http_request_duration_seconds",
            m.http_duration.clone(),
        );
        let counters = [
            (
                "herald_pending_connections_refused_total",
                &m.pending_connections_refused,
            ),
            ("herald_http_header_timeouts_total", &m.header_timeouts),
            ("herald_http_body_timeouts_total", &m.body_timeouts),
            ("herald_http_request_timeouts_total", &m.request_timeouts),
            (
                "herald_http_keepalive_timeouts_total",
                &m.keepalive_timeouts,
            ),
            ("herald_accept_errors_total", &m.accept_errors),
            ("herald_admin_auth_failures_total", &m.admin_auth_failures),
            ("herald_webhooks_dropped_total", &m.webhooks_dropped),
            ("herald_webhooks_collapsed_total", &m.webhooks_collapsed),
            (
                "herald_tls_handshake_failures_total",
                &m.tls_handshake_failures,
            ),
            ("herald_tls_certificate_reloads_total", &m.tls_reloads),
            (
                "herald_tls_certificate_reload_failures_total",
                &m.tls_reload_failures,
            ),
            (
                "herald_ip_connections_limited_total",
                &m.ip_connections_limited,
            ),
            (
                "herald_ip_api_requests_limited_total",
                &m.ip_api_requests_limited,
            ),
            (
                "herald_app_api_events_limited_total",
                &m.app_api_events_limited,
            ),
            (
                "herald_app_api_reads_limited_total",
                &m.app_api_reads_limited,
            ),
            (
                "herald_app_daily_quota_refused_total",
                &m.app_daily_quota_refused,
            ),
            ("herald_capacity_refused_total", &m.capacity_refused),
        ];
        for (name, counter) in counters {
            register(r, name, counter.clone());
        }
        register(r, "herald_webhooks_queued_total", f.webhooks_queued);
        register(r, "herald_webhooks_delivered_total", f.webhooks_delivered);
        register(r, "herald_webhook_attempts_failed_total", f.webhooks_failed);
        register(r, "herald_webhooks_dead_lettered_total", f.webhooks_dead);
        register(
            r,
            "herald_webhook_queue_depth",
            m.webhook_queue_depth.clone(),
        );
        register(r, "herald_webhook_outbox_pending", f.webhooks_pending);
        register(r, "herald_webhook_requests_total", f.webhook_requests);
        register(
            r,
            "herald_webhook_outbox_oldest_seconds",
            m.webhook_outbox_oldest.clone(),
        );
        register(
            r,
            "herald_webhook_request_duration_seconds",
            m.webhook_request.clone(),
        );
        register(
            r,
            "herald_webhook_delivery_latency_seconds",
            m.webhook_latency.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        registry.register_collector(Box::new(cluster::ClusterCollector(metrics.cluster.clone())));
        let mut apps: Vec<_> = metrics
            .apps
            .iter()
            .map(|(id, app)| (id.clone(), app.clone()))
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        registry.register_collector(Box::new(usage::UsageCollector {
            store: metrics.usage.clone(),
            apps,
        }));
        Self {
            registry,
            ..metrics
        }
    }

    /// Adds `n` to a process-wide counter.
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// The handles of one app (detached ones, counting nowhere, for an unknown id).
    pub fn app(&self, app_id: &str) -> &AppMetrics {
        self.apps.get(app_id).unwrap_or(&self.detached)
    }

    /// The configured apps' handles.
    pub fn apps(&self) -> impl Iterator<Item = (&str, &AppMetrics)> {
        self.apps.iter().map(|(id, m)| (id.as_str(), m))
    }

    /// From now on `/metrics` also shows the cluster's transport.
    pub fn attach_cluster(&self, source: ClusterSource) {
        let _ = self.cluster.set(source);
    }

    /// From now on `/metrics` also shows today's usage per app.
    pub fn attach_usage(&self, store: Arc<crate::usage::UsageStore>) {
        let _ = self.usage.set(store);
    }

    /// One HTTP request answered (`endpoint` is the route template).
    pub fn http_request(&self, endpoint: &str, status: u16, took: Duration) {
        let endpoint = endpoint.to_owned();
        let labels = HttpLabels {
            endpoint: endpoint.clone(),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_total.inc();
        self.http_duration
            .get_or_create(&EndpointLabel { endpoint })
            .observe(took);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metric names as exposed (histogram and counter suffixes folded into the family).
    fn families(text: &str) -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|rest| {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                match kind {
                    "counter" if !name.ends_with("_total") => format!("{name}_total"),
                    _ => name.to_owned(),
                }
            })
            .collect()
    }

    #[test]
    fn every_catalog_metric_is_exposed_and_nothing_else() {
        let metrics = Metrics::new(&["1"]);
        let usage = crate::usage::UsageStore::in_memory().expect("usage");
        metrics.attach_usage(Arc::new(usage));
        metrics.app("1").closed(Some(4100));
        metrics.http_request("/apps/{app_id}/events", 200, Duration::from_millis(3));
        let shown = families(&metrics.render());
        let expected: std::collections::BTreeSet<String> = catalog::CATALOG
            .iter()
            .filter(|spec| !spec.cluster_only)
            .map(|spec| spec.name.to_owned())
            .collect();
        assert_eq!(shown, expected);
    }

    #[test]
    fn per_app_series_exist_from_the_start_and_count() {
        let metrics = Metrics::new(&["7"]);
        let app = metrics.app("7");
        app.received(MessageKind::ApiEvent, 10);
        app.delivered(MessageKind::ApiEvent, 3, 10);
        app.subscription(herald_protocol::ChannelKind::Presence, 1);
        metrics.app("unknown").opened.inc();
        let text = metrics.render();
        for line in [
            "herald_messages_received_total{app_id=\"7\",kind=\"api_event\"} 1",
            "herald_messages_delivered_bytes_total{app_id=\"7\",kind=\"api_event\"} 30",
            "herald_messages_delivered_total{app_id=\"7\",kind=\"client_event\"} 0",
            "herald_subscriptions{app_id=\"7\",channel_kind=\"presence\"} 1",
            "herald_connections_opened_total{app_id=\"7\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("unknown"));
    }
}
