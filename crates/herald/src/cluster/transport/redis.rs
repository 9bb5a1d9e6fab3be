//! Redis pub/sub: one connection pipelines PUBLISH in order, one RESP2 pub/sub connection
//! receives. We own the reconnect loop (the crate's pub/sub does not reconnect): on any error
//! the link goes Down, and Up again once every topic is subscribed on a new connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, RedisConnectionInfo, RedisError, RedisResult};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::endpoint::{Endpoint, Outgoing};
use super::redact::{redact_text, redact_url};
use super::{Inbound, Link, Settings, TransportError, backoff};

/// PUBLISH commands sent in one pipeline at most.
const BATCH: usize = 512;
/// Topics per SUBSCRIBE or UNSUBSCRIBE command.
const TOPICS_PER_COMMAND: usize = 1_000;
/// How often an idle pub/sub connection is checked, so a half-open link is noticed.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Connects to Redis as `settings` says. Fails with [`TransportError::Unreachable`] when
/// Redis does not answer within `settings.connect_timeout`, unless `start_degraded`.
pub(crate) async fn connect(
    settings: &Settings,
    inbound: mpsc::Sender<Inbound>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Arc<Endpoint>, TransportError> {
    let mut target = Target::parse(settings)?;
    let first = if settings.start_degraded {
        None
    } else {
        let opened = timeout(settings.connect_timeout, target.open(settings)).await;
        match opened {
            Ok(Ok(session)) => Some(session),
            Ok(Err(e)) => return Err(unreachable(settings, &e.to_string())),
            Err(_) => return Err(unreachable(settings, "timed out")),
        }
    };
    let link = if first.is_some() {
        Link::Up
    } else {
        Link::Down
    };
    let (endpoint, queue) = Endpoint::new(settings.queue_capacity, inbound, link);
    let supervisor = Supervisor {
        target,
        settings: settings.clone(),
        endpoint: endpoint.clone(),
    };
    tasks.spawn(supervisor.run(first, queue, shutdown.clone()));
    Ok(endpoint)
}

fn unreachable(settings: &Settings, cause: &str) -> TransportError {
    TransportError::Unreachable {
        url: redact_url(&settings.url),
        timeout: settings.connect_timeout,
        cause: redact_text(cause, &settings.url),
    }
}

/// Where the Redis master is: a fixed address, or whatever Sentinel says at each connect.
enum Target {
    Direct(Client),
    Sentinel(SentinelClient),
}

/// The two connections of one link lifetime.
struct Session {
    publisher: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Target {
    fn parse(settings: &Settings) -> Result<Self, TransportError> {
        let url = settings.url.as_str();
        let invalid = |reason: String| TransportError::InvalidUrl {
            url: redact_url(url),
            reason: redact_text(&reason, url),
        };
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let sentinel = SentinelUrl::parse(rest).map_err(invalid)?;
            return sentinel
                .client()
                .map(Self::Sentinel)
                .map_err(|e| invalid(e.to_string()));
        }
        let client = match (url.starts_with("rediss://"), &settings.tls_ca) {
            (true, Some(path)) => {
                let root = std::fs::read(path).map_err(|e| TransportError::TlsCa {
                    path: path.clone(),
                    cause: e.to_string(),
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                };
                Client::build_with_tls(url, certificates)
            }
            (false, _) if !url.starts_with("redis://") => {
                return Err(invalid(
                    "expected redis://, rediss:// or redis+sentinel://".to_owned(),
                ));
            }
            _ => Client::open(url),
        };
        client.map(Self::Direct).map_err(|e| invalid(e.to_string()))
    }

    /// Opens both connections, asking Sentinel for the master first when there is one.
    async fn open(&mut self, settings: &Settings) -> RedisResult<Session> {
        let client = match self {
            Self::Direct(client) => client.clone(),
            Self::Sentinel(sentinel) => sentinel.async_get_client().await?,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.connect_timeout));
        let publisher = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let (sink, stream) = client.get_async_pubsub().await?.split();
        Ok(Session {
            publisher,
            sink,
            stream,
        })
    }
}

/// `redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`. The password is the
/// master's; the sentinels are reached without one.
struct SentinelUrl {
    sentinels: Vec<String>,
    service: String,
    password: Option<String>,
    db: i64,
}

impl SentinelUrl {
    fn parse(rest: &str) -> Result<Self, String> {
        let (authority, path) = rest.split_once('/').ok_or("no /service name")?;
        let (password, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let pass = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
                let pass = percent_encoding::percent_decode_str(pass).decode_utf8_lossy();
                (Some(pass.into_owned()), hosts)
            }
            None => (None, authority),
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        let mut segments = path.split('/');
        let service = segments.next().unwrap_or_default().to_owned();
        let db = match segments.next() {
            Some(db) if !db.is_empty() => db.parse().map_err(|_| format!("bad db {db:?}"))?,
            _ => 0,
        };
        if sentinels.is_empty() || service.is_empty() {
            return Err("expected redis+sentinel://host:port/service".to_owned());
        }
        Ok(Self {
            sentinels,
            service,
            password,
            db,
        })
    }

    fn client(self) -> RedisResult<SentinelClient> {
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(password) = self.password {
            redis = redis.set_password(password);
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
        SentinelClient::build(
            self.sentinels,
            self.service,
            Some(node),
            SentinelServerType::Master,
        )
    }
}

/// Owns the link: serves one session at a time, reconnecting with backoff in between.
struct Supervisor {
    target: Target,
    settings: Settings,
    endpoint: Arc<Endpoint>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut first: Option<Session>,
        mut queue: mpsc::Receiver<Outgoing>,
        shutdown: CancellationToken,
    ) {
        let url = redact_url(&self.settings.url);
        // A degraded start says once that Redis is away; an outage already said "link down".
        let mut announce = first.is_none();
        let mut down_since = Instant::now();
        loop {
            let (session, failures) = match first.take() {
                Some(session) => (session, 0),
                None => match self.reconnect(announce, &shutdown).await {
                    Some(opened) => opened,
                    None => return,
                },
            };
            announce = false;
            let served = self.serve(session, &mut queue, &shutdown, down_since, failures);
            let Err(e) = served.await else { return };
            self.endpoint.set_link(Link::Down);
            self.endpoint.drop_queued(&mut queue);
            let cause = redact_text(&e.to_string(), &self.settings.url);
            tracing::warn!(%url, %cause, "redis link down; reconnecting");
            down_since = Instant::now();
        }
    }

    /// Opens a session, retrying with backoff (the first try is immediate, for short blips).
    /// Returns it with the number of failed tries, or None on shutdown.
    async fn reconnect(
        &mut self,
        announce: bool,
        shutdown: &CancellationToken,
    ) -> Option<(Session, usize)> {
        let url = redact_url(&self.settings.url);
        for failures in 0.. {
            if failures > 0 {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = sleep(backoff::delay(failures)) => {}
                }
            }
            let attempt = timeout(
                self.settings.connect_timeout,
                self.target.open(&self.settings),
            );
            let opened = tokio::select! {
                () = shutdown.cancelled() => return None,
                opened = attempt => opened,
            };
            let cause = match opened {
                Ok(Ok(session)) => return Some((session, failures)),
                Ok(Err(e)) => redact_text(&e.to_string(), &self.settings.url),
                Err(_) => "timed out".to_owned(),
            };
            if failures == 0 && announce {
                tracing::warn!(%url, %cause, "redis unreachable; retrying");
            } else {
                tracing::debug!(%url, %cause, failures, "redis still unreachable");
            }
        }
        None
    }

    /// Runs one session until shutdown (Ok) or its first error.
    async fn serve(
        &self,
        session: Session,
        queue: &mut mpsc::Receiver<Outgoing>,
        shutdown: &CancellationToken,
        down_since: Instant,
        failures: usize,
    ) -> RedisResult<()> {
        let Session {
            mut publisher,
            mut sink,
            mut stream,
        } = session;
        let mut subscribed = HashSet::new();
        self.reconcile(&mut sink, &mut subscribed).await?;
        if self.endpoint.set_link(Link::Up) {
            let url = redact_url(&self.settings.url);
            let down_ms = down_since.elapsed().as_millis() as u64;
            tracing::info!(%url, down_ms, failures, "redis link up");
        }
        let receive = self.receive(&mut sink, &mut stream, &mut subscribed, shutdown);
        let write = self.write(&mut publisher, queue, shutdown);
        tokio::try_join!(receive, write).map(|_| ())
    }

    /// Forwards messages, applies subscription changes and pings an idle connection.
    async fn receive(
        &self,
        sink: &mut PubSubSink,
        stream: &mut PubSubStream,
        subscribed: &mut HashSet<String>,
        shutdown: &CancellationToken,
    ) -> RedisResult<()> {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                message = stream.next() => {
                    let Some(message) = message else { return Err(closed()) };
                    let payload = bytes::Bytes::copy_from_slice(message.get_payload_bytes());
                    self.endpoint.deliver(message.get_channel_name().to_owned(), payload);
                }
                () = self.endpoint.wanted_changed() => self.reconcile(sink, subscribed).await?,
                _ = ping.tick() => {
                    let pong = timeout(self.settings.connect_timeout, sink.ping::<redis::Value>());
                    pong.await.map_err(|_| closed())??;
                }
            }
        }
    }

    /// Sends what is queued as one pipeline per batch, in order.
    async fn write(
        &self,
        publisher: &mut MultiplexedConnection,
        queue: &mut mpsc::Receiver<Outgoing>,
        shutdown: &CancellationToken,
    ) -> RedisResult<()> {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                n = queue.recv_many(&mut batch, BATCH) => n,
            };
            if n == 0 {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for message in batch.drain(..) {
                pipe.cmd("PUBLISH")
                    .arg(message.topic)
                    .arg(message.payload.as_ref())
                    .ignore();
            }
            let stats = self.endpoint.counters();
            match pipe.exec_async(publisher).await {
                Ok(()) => stats.add_published(n as u64),
                Err(e) => {
                    stats.add_publish_dropped(n as u64);
                    return Err(e);
                }
            }
        }
    }

    /// Subscribes and unsubscribes so the connection matches what callers want.
    async fn reconcile(
        &self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> RedisResult<()> {
        let (add, remove) = self.endpoint.changes(subscribed);
        // Chunks keep each command small when a reconnect resubscribes thousands of topics.
        for chunk in add.chunks(TOPICS_PER_COMMAND) {
            sink.subscribe(chunk).await?;
            subscribed.extend(chunk.iter().cloned());
        }
        for chunk in remove.chunks(TOPICS_PER_COMMAND) {
            sink.unsubscribe(chunk).await?;
            chunk.iter().for_each(|topic| {
                subscribed.remove(topic);
            });
        }
        Ok(())
    }
}

fn closed() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "pub/sub connection closed",
    ))
}

#[cfg(test)]
mod tests {
    use super::SentinelUrl;

    #[test]
    fn sentinel_url_names_sentinels_service_password_and_db() {
        let url = SentinelUrl::parse(":p%40ss@s1:26379,s2:26380/mymaster/2").expect("valid");
        assert_eq!(url.sentinels, ["redis://s1:26379", "redis://s2:26380"]);
        assert_eq!(url.service, "mymaster");
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.db, 2);
        let bare = SentinelUrl::parse("s1:26379/mymaster").expect("valid");
        assert_eq!((bare.password, bare.db), (None, 0));
        assert!(SentinelUrl::parse("s1:26379/").is_err());
        assert!(SentinelUrl::parse("s1:26379").is_err());
    }
}
