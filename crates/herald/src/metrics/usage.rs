//! Today's usage per app (as metered for billing), read at each scrape from the usage
//! store's memory once the server has attached it.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::AppMetrics;
use super::catalog::help;
use crate::usage::{DayUsage, UsageStore};

/// Reads one figure of a day.
type Field = fn(&DayUsage) -> u64;

pub(super) struct UsageCollector {
    pub store: Arc<OnceLock<Arc<UsageStore>>>,
    pub apps: Vec<(String, AppMetrics)>,
}

impl std::fmt::Debug for UsageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageCollector")
    }
}

impl Collector for UsageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let today: Vec<_> = self
            .apps
            .iter()
            .map(|(id, app)| (id, store.today_of(id, app)))
            .collect();
        let names: [(&str, Field); 3] = [
            ("herald_usage_messages_today", |d| d.messages),
            ("herald_usage_peak_connections_today", |d| {
                d.peak_connections
            }),
            ("herald_usage_webhook_calls_today", |d| d.webhook_calls),
        ];
        for (name, value) in names {
            let mut family =
                encoder.encode_descriptor(name, help(name), None, MetricType::Gauge)?;
            for (id, day) in &today {
                let labels = [("app_id", id.as_str())];
                let gauge = ConstGauge::new(value(day) as i64);
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
