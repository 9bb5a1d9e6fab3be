//! A small parser of the Prometheus text format, so tests read `/metrics` as Prometheus
//! would (series, labels, types) instead of matching substrings.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name -> type, from `# TYPE`.
    pub types: BTreeMap<String, String>,
    pub helps: BTreeMap<String, String>,
}

/// Parses `text`; panics (failing the test) on a malformed line.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            exposition.types.insert(name.into(), kind.into());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            exposition.helps.insert(name.into(), help.into());
        } else if line.starts_with('#') {
            continue;
        } else {
            exposition.samples.push(parse_sample(line));
        }
    }
    exposition
}

/// `name{a="x",b="y"} 1.5` (labels optional).
pub fn parse_sample(line: &str) -> Sample {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let (name, labels) = parse_series(series);
    Sample {
        name,
        labels,
        value,
    }
}

/// `name` or `name{a="x"}`.
pub fn parse_series(series: &str) -> (String, BTreeMap<String, String>) {
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_owned(), BTreeMap::new());
    };
    let body = rest
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("bad labels {series:?}"));
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} in {series:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("bad escape in {series:?}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    (name.to_owned(), labels)
}

impl Exposition {
    /// The sum of every series of `selector` (`name` or `name{a="x"}`: those labels must
    /// match, others may be anything); `None` when no series matches.
    pub fn value(&self, selector: &str) -> Option<f64> {
        let (name, wanted) = parse_series(selector);
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name && wanted.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Every sample name (histograms show `_bucket`, `_sum`, `_count`).
    pub fn names(&self) -> std::collections::BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }
}

/// `GET http://{addr}/metrics`, parsed.
pub async fn scrape(addr: std::net::SocketAddr) -> Exposition {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    parse(&response.text().await.unwrap())
}
