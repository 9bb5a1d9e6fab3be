//! One app's metric handles, resolved once at startup (app ids come from configuration, so
//! the label set is bounded); the hot paths add to atomics without a label lookup.

use herald_protocol::ChannelKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub app_id: String,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub app_id: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelKindLabels {
    pub app_id: String,
    pub channel_kind: &'static str,
}

/// What a message is, for counting: read from the frame, so events from other nodes are
/// classified the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    ApiEvent,
    ClientEvent,
    /// Presence, subscription counts, watchlist events.
    Internal,
}

impl MessageKind {
    pub const ALL: [Self; 3] = [Self::ApiEvent, Self::ClientEvent, Self::Internal];

    /// Every frame starts `{"event":"name"`; `client-` names are client events and
    /// `pusher` names Herald's own.
    pub fn of_frame(frame: &str) -> Self {
        let name = frame.strip_prefix(r#"{"event":""#).unwrap_or_default();
        if name.starts_with("client-") {
            Self::ClientEvent
        } else if name.starts_with("pusher") {
            Self::Internal
        } else {
            Self::ApiEvent
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ApiEvent => "api_event",
            Self::ClientEvent => "client_event",
            Self::Internal => "internal",
        }
    }
}

const CHANNEL_KINDS: [ChannelKind; 5] = [
    ChannelKind::Public,
    ChannelKind::Private,
    ChannelKind::Encrypted,
    ChannelKind::Presence,
    ChannelKind::ServerToUser,
];

pub fn channel_kind_label(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Public => "public",
        ChannelKind::Private => "private",
        ChannelKind::Encrypted => "encrypted",
        ChannelKind::Presence => "presence",
        ChannelKind::ServerToUser => "server_to_user",
    }
}

/// The `code` label: a fixed set, so the series stay bounded.
pub fn close_code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "client",
        Some(1002) => "1002",
        Some(1007) => "1007",
        Some(1009) => "1009",
        Some(4009) => "4009",
        Some(4100) => "4100",
        Some(4200) => "4200",
        Some(4201) => "4201",
        Some(4301) => "4301",
        Some(_) => "other",
    }
}

/// The families that hold per-app series.
#[derive(Default)]
pub(super) struct AppFamilies {
    pub connections: Family<AppLabel, Gauge>,
    pub opened: Family<AppLabel, Counter>,
    pub closed: Family<CloseLabels, Counter>,
    pub slow_consumers: Family<AppLabel, Counter>,
    pub rate_limited: Family<AppLabel, Counter>,
    pub received: Family<KindLabels, Counter>,
    pub received_bytes: Family<KindLabels, Counter>,
    pub delivered: Family<KindLabels, Counter>,
    pub delivered_bytes: Family<KindLabels, Counter>,
    pub subscriptions: Family<ChannelKindLabels, Gauge>,
    pub occupied: Family<AppLabel, Gauge>,
    pub members: Family<AppLabel, Gauge>,
    pub webhooks_queued: Family<AppLabel, Counter>,
    pub webhooks_delivered: Family<AppLabel, Counter>,
    pub webhooks_failed: Family<AppLabel, Counter>,
    pub webhooks_dead: Family<AppLabel, Counter>,
    pub webhooks_pending: Family<AppLabel, Gauge>,
    pub webhook_requests: Family<AppLabel, Counter>,
}

/// Per-kind counters, indexed by [`MessageKind`].
type ByKind = [Counter; 3];

/// One app's handles.
#[derive(Debug, Clone, Default)]
pub struct AppMetrics {
    app_id: String,
    closed: Family<CloseLabels, Counter>,
    pub connections: Gauge,
    pub opened: Counter,
    pub slow_consumers: Counter,
    pub rate_limited: Counter,
    received: ByKind,
    received_bytes: ByKind,
    delivered: ByKind,
    delivered_bytes: ByKind,
    subscriptions: [Gauge; 5],
    pub occupied: Gauge,
    pub members: Gauge,
    pub webhooks_queued: Counter,
    pub webhooks_delivered: Counter,
    pub webhooks_failed: Counter,
    pub webhooks_dead: Counter,
    pub webhooks_pending: Gauge,
    pub webhook_requests: Counter,
    /// The most connections at once since the last [`AppMetrics::take_peak`].
    peak: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl AppMetrics {
    /// Resolves every series of `app_id` (so each shows from the first scrape, at zero).
    pub(super) fn resolve(families: &AppFamilies, app_id: &str) -> Self {
        let app = || AppLabel {
            app_id: app_id.to_owned(),
        };
        let by_kind = |family: &Family<KindLabels, Counter>| {
            MessageKind::ALL.map(|kind| {
                family
                    .get_or_create(&KindLabels {
                        app_id: app_id.to_owned(),
                        kind: kind.label(),
                    })
                    .clone()
            })
        };
        Self {
            app_id: app_id.to_owned(),
            closed: families.closed.clone(),
            connections: families.connections.get_or_create(&app()).clone(),
            opened: families.opened.get_or_create(&app()).clone(),
            slow_consumers: families.slow_consumers.get_or_create(&app()).clone(),
            rate_limited: families.rate_limited.get_or_create(&app()).clone(),
            received: by_kind(&families.received),
            received_bytes: by_kind(&families.received_bytes),
            delivered: by_kind(&families.delivered),
            delivered_bytes: by_kind(&families.delivered_bytes),
            subscriptions: CHANNEL_KINDS.map(|kind| {
                let labels = ChannelKindLabels {
                    app_id: app_id.to_owned(),
                    channel_kind: channel_kind_label(kind),
                };
                families.subscriptions.get_or_create(&labels).clone()
            }),
            occupied: families.occupied.get_or_create(&app()).clone(),
            members: families.members.get_or_create(&app()).clone(),
            webhooks_queued: families.webhooks_queued.get_or_create(&app()).clone(),
            webhooks_delivered: families.webhooks_delivered.get_or_create(&app()).clone(),
            webhooks_failed: families.webhooks_failed.get_or_create(&app()).clone(),
            webhooks_dead: families.webhooks_dead.get_or_create(&app()).clone(),
            webhooks_pending: families.webhooks_pending.get_or_create(&app()).clone(),
            webhook_requests: families.webhook_requests.get_or_create(&app()).clone(),
            peak: std::sync::Arc::default(),
        }
    }

    /// A message published on this node.
    pub fn received(&self, kind: MessageKind, bytes: usize) {
        self.received[kind as usize].inc();
        self.received_bytes[kind as usize].inc_by(bytes as u64);
    }

    /// `copies` of a `bytes`-long frame queued to sockets.
    pub fn delivered(&self, kind: MessageKind, copies: usize, bytes: usize) {
        if copies > 0 {
            self.delivered[kind as usize].inc_by(copies as u64);
            self.delivered_bytes[kind as usize].inc_by((copies * bytes) as u64);
        }
    }

    /// Messages as Pusher bills them: every copy delivered plus every API publish.
    pub fn billable_messages(&self) -> u64 {
        self.delivered_total() + self.received[MessageKind::ApiEvent as usize].get()
    }

    /// `connections` open now: the day's peak may rise.
    pub fn note_peak(&self, connections: i64) {
        self.peak
            .fetch_max(connections, std::sync::atomic::Ordering::Relaxed);
    }

    /// The peak since the last [`AppMetrics::take_peak`], without starting a new period.
    pub fn peak_so_far(&self) -> u64 {
        let peak = self.peak.load(std::sync::atomic::Ordering::Relaxed);
        peak.max(self.connections.get()).max(0) as u64
    }

    /// The peak since the last call; the next period starts at the current count.
    pub fn take_peak(&self) -> u64 {
        let now = self.connections.get();
        self.peak
            .swap(now, std::sync::atomic::Ordering::Relaxed)
            .max(now) as u64
    }

    /// Messages received so far, every kind.
    pub fn received_total(&self) -> u64 {
        self.received.iter().map(Counter::get).sum()
    }

    /// Copies delivered so far, every kind.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.iter().map(Counter::get).sum()
    }

    /// A connection ended; `code` is what Herald closed it with, `None` when the client
    /// closed it or went away.
    pub fn closed(&self, code: Option<u16>) {
        let labels = CloseLabels {
            app_id: self.app_id.clone(),
            code: close_code_label(code),
        };
        self.closed.get_or_create(&labels).inc();
    }

    /// A subscription added (`1`) or removed (`-1`).
    pub fn subscription(&self, kind: ChannelKind, delta: i64) {
        let index = CHANNEL_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.subscriptions[index].inc_by(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_classified_by_their_event_name() {
        let of = |frame: &str| MessageKind::of_frame(frame);
        assert_eq!(
            of(r#"{"event":"client-typing","channel":"private-a"}"#),
            MessageKind::ClientEvent
        );
        assert_eq!(
            of(r#"{"event":"pusher_internal:member_added"}"#),
            MessageKind::Internal
        );
        assert_eq!(
            of(r#"{"event":"order-shipped","channel":"a"}"#),
            MessageKind::ApiEvent
        );
    }

    #[test]
    fn close_codes_map_to_a_fixed_set() {
        assert_eq!(close_code_label(None), "client");
        assert_eq!(close_code_label(Some(4100)), "4100");
        assert_eq!(close_code_label(Some(4999)), "other");
    }
}
