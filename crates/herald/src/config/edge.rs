//! `[server]`'s protection settings and `[server.tls]`: trusted proxies, per-IP rates, the
//! node's ceilings, the request-head limit, and the certificate pair (file, flags, env).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{FileServer, Overrides, ranged};
use crate::edge::{ClientIpHeader, EdgeSettings, parse_network};
use crate::listener::tls::{self, TlsSettings};

/// Seconds between checks of the certificate files, by default.
const DEFAULT_WATCH_INTERVAL: i64 = 5;

/// `[server.tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    watch_interval: i64,
}

impl Default for FileTls {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            watch_interval: DEFAULT_WATCH_INTERVAL,
        }
    }
}

/// What this file contributes to `ServerConfig`.
pub(super) struct EdgeParts {
    pub tls: Option<TlsSettings>,
    pub edge: EdgeSettings,
    pub max_header_bytes: usize,
}

pub(super) fn merge(
    s: &FileServer,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> EdgeParts {
    let mut ranged = |name: &str, value: i64, min: i64, max: i64| {
        ranged(&format!("server.{name}"), value, min, max, problems)
    };
    let rate = 1_000_000;
    let max_connections_per_second_per_ip = ranged(
        "max_connections_per_second_per_ip",
        s.max_connections_per_second_per_ip,
        0,
        rate,
    ) as u32;
    let max_api_requests_per_second_per_ip = ranged(
        "max_api_requests_per_second_per_ip",
        s.max_api_requests_per_second_per_ip,
        0,
        rate,
    ) as u32;
    let max_connections = ranged("max_connections", s.max_connections, 0, 100_000_000) as usize;
    let max_memory_mb = ranged("max_memory_mb", s.max_memory_mb, 0, 1 << 30);
    // hyper needs at least 8 KiB of read buffer.
    let max_header_bytes = ranged("max_header_bytes", s.max_header_bytes, 8_192, 1 << 20) as usize;
    let edge = EdgeSettings {
        trusted_proxies: trusted_proxies(&s.trusted_proxies, problems),
        client_ip_header: s.client_ip_header.parse().unwrap_or_else(|()| {
            problems.push(format!(
                "server.client_ip_header must be \"x-forwarded-for\" or \"forwarded\", got {:?}",
                s.client_ip_header
            ));
            ClientIpHeader::default()
        }),
        max_connections_per_second_per_ip,
        max_api_requests_per_second_per_ip,
        max_connections,
        max_memory_mb,
    };
    EdgeParts {
        tls: tls_settings(s.tls.as_ref(), overrides, problems),
        edge,
        max_header_bytes,
    }
}

fn trusted_proxies(entries: &[String], problems: &mut Vec<String>) -> Vec<ipnet::IpNet> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(n, entry)| {
            let network = parse_network(entry);
            if network.is_none() {
                problems.push(format!(
                    "server.trusted_proxies[{n}]: {entry:?} is not an IP address or CIDR range (like \"10.0.0.0/8\")"
                ));
            }
            network
        })
        .collect()
}

/// The pair from flags/environment over the file; both or neither; the files must load.
fn tls_settings(
    file: Option<&FileTls>,
    overrides: &Overrides,
    problems: &mut Vec<String>,
) -> Option<TlsSettings> {
    let from_file = |pick: fn(&FileTls) -> &Option<PathBuf>| file.and_then(|f| pick(f).clone());
    let cert = overrides
        .tls_cert
        .clone()
        .or_else(|| from_file(|f| &f.cert));
    let key = overrides.tls_key.clone().or_else(|| from_file(|f| &f.key));
    let interval = file.map_or(DEFAULT_WATCH_INTERVAL, |f| f.watch_interval);
    let watch_interval = ranged("server.tls.watch_interval", interval, 0, 86_400, problems);
    let settings = match (cert, key) {
        (Some(cert), Some(key)) => TlsSettings {
            cert,
            key,
            watch_interval: Duration::from_secs(watch_interval),
        },
        (None, None) if file.is_none() => return None,
        _ => {
            problems.push(
                "server.tls needs both cert and key (--tls-cert and --tls-key, or \
                 HERALD_TLS_CERT and HERALD_TLS_KEY)"
                    .into(),
            );
            return None;
        }
    };
    if let Err(reason) = tls::check(&settings) {
        problems.push(reason);
    }
    Some(settings)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    /// A self-signed pair written to `dir`; returns the certificate and key paths.
    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.cert.pem()).expect("write");
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write");
        (cert_path, key_path)
    }

    #[test]
    fn edge_settings_are_read_and_checked() {
        let config = Config::from_toml(
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nclient_ip_header = \"Forwarded\"\n\
             max_connections_per_second_per_ip = 20\nmax_api_requests_per_second_per_ip = 100\n\
             max_connections = 5000\nmax_memory_mb = 2048\nmax_header_bytes = 32768\n",
        )
        .expect("valid");
        let edge = &config.server.edge;
        assert_eq!(edge.trusted_proxies.len(), 2);
        assert_eq!(edge.client_ip_header, ClientIpHeader::Forwarded);
        assert_eq!(
            (
                edge.max_connections_per_second_per_ip,
                edge.max_api_requests_per_second_per_ip,
                edge.max_connections,
                edge.max_memory_mb
            ),
            (20, 100, 5000, 2048)
        );
        assert_eq!(config.server.max_header_bytes, 32_768);
        assert!(config.server.tls.is_none());
        let text = Config::from_toml(
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\", \"proxy\"]\nclient_ip_header = \"x-real-ip\"\n\
             max_connections = -1\nmax_header_bytes = 100\n[server.tls]\nwatch_intervall = 1\n",
        )
        .expect_err("invalid")
        .to_string();
        for needle in [
            "server.trusted_proxies[0]: \"10.0.0.0/33\" is not an IP address or CIDR range",
            "server.trusted_proxies[1]: \"proxy\"",
            "server.client_ip_header must be \"x-forwarded-for\" or \"forwarded\", got \"x-real-ip\"",
            "server.max_connections must be between 0 and",
            "server.max_header_bytes must be between 8192 and",
            "unknown setting `server.tls.watch_intervall` (did you mean `watch_interval`?)",
            "server.tls needs both cert and key",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn the_examples_tls_block_is_valid() {
        let example = include_str!("../../../../herald.example.toml");
        let block: String = example
            .lines()
            .skip_while(|line| *line != "#[server.tls]")
            .take_while(|line| line.starts_with('#'))
            .map(|line| format!("{}\n", &line[1..]))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair(dir.path(), "example");
        let block = block
            .replace("/etc/herald/tls/fullchain.pem", &cert.display().to_string())
            .replace("/etc/herald/tls/privkey.pem", &key.display().to_string());
        let config = Config::from_toml(&block).expect("the example's [server.tls] is valid");
        let tls = config.server.tls.expect("tls on");
        assert_eq!((tls.cert, tls.key), (cert, key));
        assert_eq!(tls.watch_interval, Duration::from_secs(5));
    }

    #[test]
    fn tls_pair_from_the_file_or_the_flags_must_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair(dir.path(), "a");
        let toml = format!(
            "[server.tls]\ncert = {:?}\nkey = {:?}\nwatch_interval = 0\n",
            cert.display(),
            key.display()
        );
        let config = Config::from_toml(&toml).expect("valid");
        let tls = config.server.tls.expect("tls on");
        assert_eq!(
            (tls.cert, tls.watch_interval),
            (cert.clone(), Duration::ZERO)
        );

        // A key of another pair, given by flag over the file's.
        let (_, other_key) = pair(dir.path(), "b");
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, &toml).expect("write");
        let overrides = Overrides {
            config: Some(file),
            tls_key: Some(other_key.clone()),
            ..Overrides::default()
        };
        let text = Config::load(&overrides).expect_err("mismatch").to_string();
        assert!(
            text.contains(&format!(
                "TLS key {} does not belong to the certificate in {}",
                other_key.display(),
                cert.display()
            )),
            "{text}"
        );

        let only_cert = Overrides {
            tls_cert: Some(cert.clone()),
            ..Overrides::default()
        };
        let text = Config::load(&only_cert)
            .expect_err("half a pair")
            .to_string();
        assert!(text.contains("needs both cert and key"), "{text}");

        let missing = Overrides {
            tls_cert: Some(dir.path().join("nope.crt")),
            tls_key: Some(key.clone()),
            ..Overrides::default()
        };
        let text = Config::load(&missing).expect_err("missing").to_string();
        assert!(
            text.contains("TLS certificate") && text.contains("nope.crt"),
            "{text}"
        );

        std::fs::write(dir.path().join("empty.crt"), "not pem\n").expect("write");
        let empty = Overrides {
            tls_cert: Some(dir.path().join("empty.crt")),
            tls_key: Some(key),
            ..Overrides::default()
        };
        let text = Config::load(&empty).expect_err("no pem").to_string();
        assert!(text.contains("no CERTIFICATE block"), "{text}");
        let keyless = Overrides {
            tls_cert: Some(cert.clone()),
            tls_key: Some(cert),
            ..Overrides::default()
        };
        let text = Config::load(&keyless).expect_err("no key").to_string();
        assert!(text.contains("no usable private key"), "{text}");
    }
}
