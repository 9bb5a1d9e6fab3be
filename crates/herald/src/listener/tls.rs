//! TLS on the main port (rustls, aws-lc-rs): the PEM certificate chain and key of
//! `[server.tls]`, swapped in place on SIGHUP or when the files change, so new handshakes
//! use the new pair while established connections keep theirs. A pair that does not load
//! is logged with the reason and the current one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// `[server.tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are checked; zero: on SIGHUP only.
    pub watch_interval: Duration,
}

/// The listener's TLS: one rustls configuration whose certificate can be replaced.
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<CurrentCert>,
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The certificate new handshakes get.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Loads the pair; the error says which file and what is wrong with it.
    pub fn load(settings: &TlsSettings) -> Result<Arc<Self>, String> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let pair = load_pair(settings, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(pair))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // Herald speaks HTTP/1.1 only (WebSocket upgrades need it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            settings: settings.clone(),
            provider,
        }))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Loads the files again; on success new handshakes use the new pair.
    pub fn reload(&self) -> Result<(), String> {
        let pair = load_pair(&self.settings, &self.provider)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
        Ok(())
    }
}

/// Checks that the pair loads, for configuration validation.
pub fn check(settings: &TlsSettings) -> Result<(), String> {
    load_pair(settings, &aws_lc_rs::default_provider()).map(drop)
}

fn load_pair(settings: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let (cert_path, key_path) = (settings.cert.display(), settings.key.display());
    let cert_pem = read(&settings.cert, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate {cert_path}: not valid PEM ({e})"))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {cert_path}: no CERTIFICATE block in the file"
        ));
    }
    let key_pem = read(&settings.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("TLS key {key_path}: no usable private key ({e})"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("TLS key {key_path} does not belong to the certificate in {cert_path}")
        }
        other => format!("TLS certificate {cert_path} / key {key_path}: {other}"),
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("TLS {what} {}: {e}", path.display()))
}

/// What the files look like now: modification time, length and inode of each (a renewal
/// tool that renames a new file into place changes the inode even within one mtime tick).
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

fn stamp(settings: &TlsSettings) -> Stamp {
    [&settings.cert, &settings.key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some((meta.modified().ok()?, meta.len(), inode))
    })
}

/// Reloads on SIGHUP, and when the files' stamp changes (checked every `watch_interval`),
/// until shutdown. A failed attempt is logged once per change of the files.
pub async fn watch(tls: Arc<Tls>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut hangup = hangups();
    let interval = tls.settings.watch_interval;
    let mut ticks = tokio::time::interval(if interval.is_zero() {
        Duration::from_secs(3_600)
    } else {
        interval
    });
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = stamp(&tls.settings);
    loop {
        let why = tokio::select! {
            () = shutdown.cancelled() => return,
            () = next_hangup(&mut hangup) => "SIGHUP",
            _ = ticks.tick() => {
                let now = stamp(&tls.settings);
                if interval.is_zero() || now == seen {
                    continue;
                }
                "the files changed"
            }
        };
        seen = stamp(&tls.settings);
        match tls.reload() {
            Ok(()) => {
                metrics.tls_reloads.inc();
                tracing::info!(cert = %tls.settings.cert.display(), "TLS certificate reloaded ({why}); new connections use it");
            }
            Err(reason) => {
                metrics.tls_reload_failures.inc();
                tracing::warn!(
                    "TLS certificate not reloaded ({why}), keeping the current one: {reason}"
                );
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    None
}

#[allow(clippy::unused_async)]
async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        if signal.recv().await.is_some() {
            return;
        }
        *hangups = None;
    }
    std::future::pending::<()>().await;
}
