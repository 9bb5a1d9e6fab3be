//! TLS for tests: a certificate authority made with rcgen, server certificates for
//! 127.0.0.1 with chosen serial numbers written as PEM files (atomically, as a renewal tool
//! would), and clients that trust only that authority.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::{Connector, MaybeTlsStream, client_async_tls_with_config};

use super::{ApiClient, KEY, SECRET, Socket, TestClient};

/// A test certificate authority.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
    der: CertificateDer<'static>,
}

/// One server certificate and its key, as PEM, and the certificate as DER (to recognise it).
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Herald test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// A certificate for `127.0.0.1` and `localhost` with serial number `serial`.
    pub fn issue(&self, serial: u64) -> ServerCert {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("herald test server {serial}"));
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client configuration that trusts this authority only.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("root");
        let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// An HTTPS API client for app 1 (`base` is `https://{addr}`).
    pub fn api(&self, addr: SocketAddr) -> ApiClient {
        let ca = reqwest::Certificate::from_pem(self.pem.as_bytes()).expect("ca pem");
        ApiClient {
            base: format!("https://{addr}"),
            app_id: "1".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            http: reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .expect("client"),
        }
    }

    /// A `wss://` protocol client of app 1 and the certificate the server presented.
    pub async fn client(&self, addr: SocketAddr) -> (TestClient, CertificateDer<'static>) {
        let (ws, cert) = self.open(addr, KEY).await;
        (TestClient::established(ws).await, cert)
    }

    /// A `wss://` socket to `/app/{key}` and the certificate the server presented.
    pub async fn open(&self, addr: SocketAddr, key: &str) -> (Socket, CertificateDer<'static>) {
        let url = format!("wss://{addr}/app/{key}?protocol=7&client=js&version=8.4.0");
        let tcp = TcpStream::connect(addr).await.expect("tcp");
        let connector = Connector::Rustls(self.client_config());
        let (ws, _) = client_async_tls_with_config(url, tcp, None, Some(connector))
            .await
            .expect("wss connects");
        let cert = match ws.get_ref() {
            MaybeTlsStream::Rustls(tls) => tls.get_ref().1.peer_certificates().expect("certs")[0]
                .clone()
                .into_owned(),
            _ => panic!("not TLS"),
        };
        (ws, cert)
    }

    /// The certificate a new TLS handshake with `addr` presents.
    pub async fn presented(&self, addr: SocketAddr) -> CertificateDer<'static> {
        let tcp = TcpStream::connect(addr).await.expect("tcp");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let tls = TlsConnector::from(self.client_config())
            .connect(name, tcp)
            .await
            .expect("handshake");
        tls.get_ref().1.peer_certificates().expect("certs")[0]
            .clone()
            .into_owned()
    }
}

impl ServerCert {
    /// Writes `name.crt` and `name.key` in `dir` (each through a rename, so a reader never
    /// sees half a file); returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        replace(&key, &self.key_pem);
        replace(&cert, &self.cert_pem);
        (cert, key)
    }
}

/// Replaces `path` with `text` atomically.
pub fn replace(path: &Path, text: &str) {
    let temporary = PathBuf::from(format!("{}.tmp", path.display()));
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

/// `[server.tls]` for a pair.
pub fn tls_section(cert: &Path, key: &Path, watch_interval: u64) -> String {
    format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\nwatch_interval = {watch_interval}\n",
        cert.display(),
        key.display()
    )
}
