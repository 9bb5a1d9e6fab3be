//! Real brokers for transport and cluster tests: the machine's shared Redis (6379) and NATS
//! (4222), and private `redis-server` / `nats-server` processes on free ports that a test may
//! kill and restart without disturbing anyone else. TLS material is made here with rcgen.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// Panics with how to start it when the shared Redis is not listening: never skip silently.
pub fn require_shared_redis() -> &'static str {
    require(
        "127.0.0.1:6379",
        "Redis",
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
    );
    SHARED_REDIS
}

/// Panics with how to start it when the shared NATS is not listening.
pub fn require_shared_nats() -> &'static str {
    require(
        "127.0.0.1:4222",
        "NATS",
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
         -a 127.0.0.1 -p 4222",
    );
    SHARED_NATS
}

fn require(addr: &str, what: &str, how: &str) {
    let addr: SocketAddr = addr.parse().expect("valid address");
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        panic!("{what} is not running on {addr}; these tests need it. Start it with: {how}");
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A broker process of our own, killed on drop.
pub struct PrivateBroker {
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Holds config files and TLS material for the process's lifetime.
    pub dir: tempfile::TempDir,
}

impl PrivateBroker {
    /// `redis-server` on a free port, no persistence; `extra` adds flags (e.g. requirepass).
    pub fn redis(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--save".to_owned(),
            String::new(),
            "--appendonly".to_owned(),
            "no".to_owned(),
            "--dir".to_owned(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::spawn("redis-server".into(), args, port, dir)
    }

    /// `redis-server` serving only TLS on a free port, with a certificate from `tls`.
    pub fn redis_tls(tls: &TlsFiles) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-auth-clients",
            "no",
            "--tls-cert-file",
            &tls.cert.display().to_string(),
            "--tls-key-file",
            &tls.key.display().to_string(),
            "--tls-ca-cert-file",
            &tls.ca.display().to_string(),
            "--dir",
            &dir.path().display().to_string(),
        ];
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Self::spawn("redis-server".into(), args, port, dir)
    }

    /// A Redis Sentinel on a free port watching `master` (named `mymaster`, quorum 1), quick
    /// to fail over: the master counts as down after 500 ms.
    pub fn sentinel(master: &PrivateBroker) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 500\n\
             sentinel failover-timeout mymaster 2000\n",
            dir.path().display(),
            master.port
        );
        std::fs::write(&config, text).expect("write sentinel.conf");
        let args = vec![config.display().to_string(), "--sentinel".to_owned()];
        Self::spawn("redis-server".into(), args, port, dir)
    }

    /// `nats-server` on a free port; `extra` adds flags (e.g. `--user`, `--pass`, `--tls`).
    pub fn nats(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::spawn(NATS_SERVER.into(), args, port, dir)
    }

    /// `nats-server` requiring TLS with a certificate from `tls`.
    pub fn nats_tls(tls: &TlsFiles) -> Self {
        let cert = tls.cert.display().to_string();
        let key = tls.key.display().to_string();
        Self::nats(&["--tls", "--tlscert", &cert, "--tlskey", &key])
    }

    fn spawn(program: PathBuf, args: Vec<String>, port: u16, dir: tempfile::TempDir) -> Self {
        let mut broker = Self {
            port,
            program,
            args,
            child: None,
            dir,
        };
        broker.start();
        broker
    }

    /// Starts the process (again, on the same port) and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install it (apt-get install redis-server nats-server)",
                    self.program.display()
                )
            });
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr}",
                self.program.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL: an outage, not a graceful stop) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private CA and a server certificate for 127.0.0.1 and localhost, as PEM files.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFiles {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server cert");
        let write = |name: &str, pem: String| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            _dir: dir,
        }
    }

    pub fn ca_path(&self) -> &Path {
        &self.ca
    }
}
