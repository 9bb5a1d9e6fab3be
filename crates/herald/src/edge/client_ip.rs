//! Who the client is: the socket's peer address, or, when that peer is a trusted proxy, the
//! rightmost address in `X-Forwarded-For` (or `Forwarded`) that no trusted proxy owns.
//! Addresses left of it are whatever the client wrote, so they are never believed.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The header a trusted proxy appends the client's address to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, Envoy, Caddy, Traefik, ELB).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl FromStr for ClientIpHeader {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        match name.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(()),
        }
    }
}

/// `[server] trusted_proxies` and `client_ip_header`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ClientIpHeader,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>, header: ClientIpHeader) -> Self {
        Self { networks, header }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Right to left: each trusted hop vouches for the address left of it.
        for hop in self.hops(headers).into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(client) {
                        break;
                    }
                }
                // "unknown", an obfuscated name or garbage: the last trusted hop answers for it.
                None => break,
            }
        }
        client
    }

    /// Every hop of the configured header, in order (several header lines concatenate).
    fn hops(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let (name, parse): (&str, fn(&str) -> Option<IpAddr>) = match self.header {
            ClientIpHeader::XForwardedFor => ("x-forwarded-for", parse_address),
            ClientIpHeader::Forwarded => ("forwarded", parse_forwarded_element),
        };
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or(",").split(','))
            .map(|hop| parse(hop.trim()))
            .collect()
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The `for=` parameter of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_address(value))?
    })
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`, a /32 or /128).
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxies(networks: &[&str], header: ClientIpHeader) -> TrustedProxies {
        let networks = networks
            .iter()
            .map(|n| parse_network(n).expect("network"))
            .collect();
        TrustedProxies::new(networks, header)
    }

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let claims = headers("x-forwarded-for", &["1.1.1.1"]);
        assert_eq!(trusted.client_ip(ip("192.0.2.9"), &claims), ip("192.0.2.9"));
        let nobody = TrustedProxies::default();
        assert_eq!(nobody.client_ip(ip("10.0.0.1"), &claims), ip("10.0.0.1"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"], ClientIpHeader::XForwardedFor);
        // The client forged the first entry; the edge proxy appended the real address.
        let chain = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.5", "10.1.1.1"]);
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &chain),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_chain_of_trusted_hops_yields_its_leftmost_and_garbage_stops_the_walk() {
        let trusted = proxies(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let all = headers("x-forwarded-for", &["10.9.9.9, 10.0.0.2"]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &all), ip("10.9.9.9"));
        let garbage = headers("x-forwarded-for", &["1.2.3.4, nonsense, 10.0.0.2"]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &garbage), ip("10.0.0.2"));
        let none = HeaderMap::new();
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &none), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_elements_with_ports_quotes_and_ipv6() {
        let trusted = proxies(&["::1/128"], ClientIpHeader::Forwarded);
        let chain = headers(
            "forwarded",
            &["for=192.0.2.60;proto=https, For=\"[2001:db8:cafe::17]:4711\""],
        );
        assert_eq!(
            trusted.client_ip(ip("::1"), &chain),
            ip("2001:db8:cafe::17")
        );
        // With Forwarded configured, X-Forwarded-For means nothing.
        let other = headers("x-forwarded-for", &["192.0.2.1"]);
        assert_eq!(trusted.client_ip(ip("::1"), &other), ip("::1"));
        let unknown = headers("forwarded", &["for=unknown"]);
        assert_eq!(trusted.client_ip(ip("::1"), &unknown), ip("::1"));
    }

    #[test]
    fn addresses_in_every_shape_and_mapped_ipv4() {
        assert_eq!(parse_address("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_address("[::1]:443"), Some(ip("::1")));
        assert_eq!(parse_address("[::1]"), Some(ip("::1")));
        assert_eq!(parse_address("_hidden"), None);
        let trusted = proxies(&["127.0.0.1/32"], ClientIpHeader::XForwardedFor);
        let mapped = ip("::ffff:127.0.0.1");
        let chain = headers("x-forwarded-for", &["::ffff:198.51.100.1"]);
        assert_eq!(trusted.client_ip(mapped, &chain), ip("198.51.100.1"));
    }

    #[test]
    fn networks_parse_with_or_without_a_prefix() {
        assert_eq!(
            parse_network("127.0.0.1"),
            Some("127.0.0.1/32".parse().expect("net"))
        );
        assert!(parse_network("10.0.0.0/8").is_some());
        assert!(parse_network("fd00::/8").is_some());
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("proxy.local").is_none());
        assert_eq!("Forwarded".parse(), Ok(ClientIpHeader::Forwarded));
        assert!("x-real-ip".parse::<ClientIpHeader>().is_err());
    }
}
