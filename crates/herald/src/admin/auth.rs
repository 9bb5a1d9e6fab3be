//! Who may use the dashboard and `/admin`: a bearer token or a session cookie set by the
//! login page (random id kept server-side with an expiry, at most [`MAX_SESSIONS`]). Wrong
//! tokens are compared in constant time, counted, and limited per IP; state changes check
//! `Origin`. Without a token the console is open, which `router` allows on loopback only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::apps::Secret;

/// Sessions kept at once; the oldest goes first.
pub const MAX_SESSIONS: usize = 64;
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
pub const COOKIE: &str = "herald_session";
/// Wrong tokens one IP may send per window before it is refused with 429.
const FAILURES_ALLOWED: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// IPs remembered for the limit; beyond it the map is cleared of old windows first.
const MAX_TRACKED_IPS: usize = 4_096;

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or wrong ones.
    Unauthorized,
    /// A state change from another origin.
    CrossOrigin,
    /// Too many wrong tokens from this address.
    TooMany,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Admin token required\n"),
            Self::CrossOrigin => (StatusCode::FORBIDDEN, "Cross-origin request refused\n"),
            Self::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong tokens; try again in a minute\n",
            ),
        };
        (status, text).into_response()
    }
}

/// The dashboard's gate.
pub struct Auth {
    /// SHA-256 of the token; `None`: open (loopback only).
    token: Option<[u8; 32]>,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Auth {
    pub fn new(token: Option<&Secret>) -> Self {
        Self {
            token: token.map(|t| digest(t.expose())),
            sessions: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.token.is_none()
    }

    /// Compares digests in constant time, so neither content nor length leaks.
    fn token_matches(&self, given: &str) -> bool {
        self.token
            .is_some_and(|token| bool::from(token.ct_eq(&digest(given))))
    }

    fn is_limited(&self, ip: IpAddr, now: Instant) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(&ip).is_some_and(|(since, n)| {
            now.duration_since(*since) < FAILURE_WINDOW && *n >= FAILURES_ALLOWED
        })
    }

    fn fail(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED_IPS {
            failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        if failures.len() >= MAX_TRACKED_IPS && !failures.contains_key(&ip) {
            return; // under a flood of addresses: the cap holds, the token still guards
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// A login with `given`: a new session id, or why not. Counts a wrong token.
    pub fn login(
        &self,
        given: &str,
        ip: IpAddr,
        failures: &prometheus_client::metrics::counter::Counter,
    ) -> Result<String, Refusal> {
        let now = Instant::now();
        if self.is_limited(ip, now) {
            return Err(Refusal::TooMany);
        }
        if !self.token_matches(given) {
            failures.inc();
            self.fail(ip, now);
            return Err(Refusal::Unauthorized);
        }
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), now + SESSION_TTL);
        Ok(id)
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.remove(&id);
        }
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers) else {
            return false;
        };
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&id)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// Checks a request: credentials (unless open), then `Origin` for state changes.
    pub fn check(
        &self,
        parts: &Parts,
        ip: IpAddr,
        failures: &prometheus_client::metrics::counter::Counter,
    ) -> Result<(), Refusal> {
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD);
        let origin = parts
            .headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if changes_state && origin.is_some_and(|origin| !same_origin(origin, &parts.headers)) {
            return Err(Refusal::CrossOrigin);
        }
        if self.is_open() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(given) = bearer(&parts.headers) {
            if self.is_limited(ip, now) {
                return Err(Refusal::TooMany);
            }
            if self.token_matches(given) {
                return Ok(());
            }
            failures.inc();
            self.fail(ip, now);
            return Err(Refusal::Unauthorized);
        }
        if self.has_session(&parts.headers) {
            // A browser sends Origin with every state change; a cookie without one is not
            // a page of ours.
            if changes_state && origin.is_none() {
                return Err(Refusal::CrossOrigin);
            }
            return Ok(());
        }
        Err(Refusal::Unauthorized)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_owned)
}

/// `Origin` names the host the request was sent to.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let stripped = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    stripped == Some(host)
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> prometheus_client::metrics::counter::Counter {
        prometheus_client::metrics::counter::Counter::default()
    }

    #[test]
    fn sessions_are_capped_and_wrong_tokens_limited_per_ip() {
        let auth = Auth::new(Some(&Secret::new("a-long-enough-token")));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let failures = counter();
        let ids: Vec<String> = (0..MAX_SESSIONS + 5)
            .map(|_| {
                auth.login("a-long-enough-token", ip, &failures)
                    .expect("login")
            })
            .collect();
        assert_eq!(auth.sessions.lock().expect("lock").len(), MAX_SESSIONS);
        assert!(!auth.sessions.lock().expect("lock").contains_key(&ids[0]));
        for _ in 0..FAILURES_ALLOWED {
            assert_eq!(
                auth.login("wrong", ip, &failures),
                Err(Refusal::Unauthorized)
            );
        }
        assert_eq!(
            auth.login("a-long-enough-token", ip, &failures),
            Err(Refusal::TooMany)
        );
        assert_eq!(failures.get(), u64::from(FAILURES_ALLOWED));
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(auth.login("a-long-enough-token", other, &failures).is_ok());
    }
}
