//! deploy/grafana/herald.json queries only what Herald exposes: every metric name in its
//! PromQL (histograms through `_bucket`, `_sum`, `_count`) is a sample name of a live
//! node's `/metrics`, and every label it selects or groups by is a label of that metric.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::cluster::{Backend, TestCluster};
use support::prom::{Exposition, scrape};

const DASHBOARD: &str = include_str!("../../../deploy/grafana/herald.json");

/// Every `expr` (panels, nested rows) and variable query of the dashboard.
fn queries(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr" | "definition", Value::String(text)) => found.push(text.clone()),
                    _ => queries(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| queries(item, found)),
        _ => {}
    }
}

/// One metric reference in a query: its name and the labels the query uses with it.
#[derive(Debug, Default)]
struct Uses {
    labels: BTreeSet<String>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names (`herald_…`, `process_…`) of `query` with the labels of their selectors,
/// plus the labels of every `by (…)` (attributed to each metric of the query).
fn parse(query: &str, uses: &mut BTreeMap<String, Uses>) {
    let chars: Vec<char> = query.chars().collect();
    let mut names = Vec::new();
    let mut grouped = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !is_name_char(chars[i]) || (i > 0 && is_name_char(chars[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_name_char(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let rest: String = chars[i..].iter().collect();
        if word == "by" || word == "label_values" {
            let inside = rest.trim_start().trim_start_matches('(');
            let list = inside.split(')').next().unwrap_or_default();
            let labels = list.split(',').map(str::trim).filter(|l| !l.is_empty());
            if word == "by" {
                grouped.extend(labels.map(str::to_owned));
            } else {
                // label_values(metric, label)
                let parts: Vec<&str> = labels.collect();
                grouped.push(parts[1].to_owned());
            }
            continue;
        }
        if !(word.starts_with("herald_") || word.starts_with("process_")) {
            continue;
        }
        let entry = uses.entry(word.clone()).or_default();
        if let Some(selector) = rest.strip_prefix('{') {
            let body = selector.split('}').next().unwrap_or_default();
            for matcher in body.split(',').filter(|m| !m.trim().is_empty()) {
                let key = matcher
                    .split(['=', '!', '~'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                entry.labels.insert(key.to_owned());
            }
        }
        names.push(word);
    }
    for name in names {
        let entry = uses.get_mut(&name).unwrap();
        entry.labels.extend(grouped.iter().cloned());
    }
}

/// Labels a scrape shows for `name`, plus those the Prometheus server adds.
fn labels_of(metrics: &Exposition, name: &str) -> BTreeSet<String> {
    let mut labels: BTreeSet<String> = metrics
        .samples
        .iter()
        .filter(|s| s.name == name)
        .flat_map(|s| s.labels.keys().cloned())
        .collect();
    labels.extend(["instance".to_owned(), "job".to_owned()]);
    // Quantiles group by `le` on the buckets; `_sum`/`_count` carry the same series labels.
    if let Some(base) = name
        .strip_suffix("_sum")
        .or_else(|| name.strip_suffix("_count"))
    {
        labels.extend(labels_of(metrics, &format!("{base}_bucket")));
        labels.remove("le");
    }
    labels
}

#[test]
fn the_parser_finds_names_selector_labels_and_groupings() {
    let mut uses = BTreeMap::new();
    parse(
        r#"histogram_quantile(0.99, sum by (le, endpoint) (rate(herald_x_bucket{instance=~"$i",status!~"5.."}[5m]))) / process_y"#,
        &mut uses,
    );
    let names: Vec<_> = uses.keys().cloned().collect();
    assert_eq!(names, ["herald_x_bucket", "process_y"]);
    let labels: Vec<_> = uses["herald_x_bucket"].labels.iter().cloned().collect();
    assert_eq!(labels, ["endpoint", "instance", "le", "status"]);
}

#[tokio::test]
async fn every_metric_and_label_the_dashboard_queries_exists() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "herald");
    let mut found = Vec::new();
    queries(&dashboard["panels"], &mut found);
    queries(&dashboard["templating"], &mut found);
    let mut uses = BTreeMap::new();
    for query in &found {
        parse(query, &mut uses);
    }
    assert!(uses.len() > 40, "only {} metrics queried", uses.len());

    // Two nodes, so the cluster's transport shows; traffic, so labelled families have series.
    let cluster = TestCluster::start(2, Backend::memory()).await;
    let node = &cluster.nodes[0];
    let mut client = node.client().await;
    client.subscribe("grafana").await;
    node.api().trigger(&["grafana"], "tick", "1").await;
    client.expect("tick").await;
    // A closed connection, for the per-code series of herald_connections_closed_total.
    drop(node.client().await);
    let closed = r#"herald_connections_closed_total{code="client"}"#; // gone, not 1002
    let deadline = std::time::Instant::now() + support::WAIT;
    let metrics = loop {
        let metrics = scrape(node.addr).await;
        if metrics.value(closed).is_some() {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no close counted: {:?}",
            metrics
                .samples
                .iter()
                .filter(|s| s.name.contains("closed"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let shown = metrics.names();

    let mut problems = Vec::new();
    for (name, used) in &uses {
        if !shown.contains(name.as_str()) {
            problems.push(format!("{name} is not in /metrics"));
            continue;
        }
        let known = labels_of(&metrics, name);
        for label in used.labels.difference(&known) {
            problems.push(format!("{name} has no label {label}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
