//! NATS core pub/sub. The client reconnects and resubscribes by itself; we map its events to
//! [`Link`], confirming with a round trip (PING/PONG) that the resubscriptions reached the
//! server before saying Up. Until the first connect (degraded start) we retry ourselves.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures_util::stream::{SelectAll, StreamExt, TakeUntil};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

use super::endpoint::{Endpoint, Outgoing};
use super::redact::{redact_text, redact_url};
use super::{Inbound, Link, Settings, TransportError, backoff};

/// Publishes handed to the client per turn of the writer.
const BATCH: usize = 512;
/// How often a Down link on a connected client tries to confirm its subscriptions again.
const CONFIRM_EVERY: Duration = Duration::from_secs(1);

/// Every subscription's stream; cancelling a stream's token ends it, which unsubscribes.
type Messages =
    SelectAll<TakeUntil<async_nats::Subscriber, Pin<Box<WaitForCancellationFutureOwned>>>>;

/// Connects to NATS as `settings` says. Fails with [`TransportError::Unreachable`] when no
/// server answers within `settings.connect_timeout`, unless `start_degraded`.
pub(crate) async fn connect(
    settings: &Settings,
    inbound: mpsc::Sender<Inbound>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Arc<Endpoint>, TransportError> {
    let servers = NatsUrl::parse(&settings.url)?;
    if let Some(path) = &settings.tls_ca
        && let Err(e) = std::fs::metadata(path)
    {
        let (path, cause) = (path.clone(), e.to_string());
        return Err(TransportError::TlsCa { path, cause });
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let connector = Connector {
        servers,
        settings: settings.clone(),
        events_tx,
    };
    let first = if settings.start_degraded {
        None
    } else {
        let attempt = timeout(settings.connect_timeout, connector.open()).await;
        match attempt {
            Ok(Ok(client)) => Some(client),
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
        connector,
        endpoint: endpoint.clone(),
    };
    tasks.spawn(supervisor.run(first, queue, events, shutdown.clone()));
    Ok(endpoint)
}

fn unreachable(settings: &Settings, cause: &str) -> TransportError {
    TransportError::Unreachable {
        url: redact_url(&settings.url),
        timeout: settings.connect_timeout,
        cause: redact_text(cause, &settings.url),
    }
}

/// Server list and credentials. Credentials are taken out of the addresses so the client
/// never echoes them in its own errors.
struct NatsUrl {
    servers: Vec<ServerAddr>,
    user: Option<(String, Option<String>)>,
}

impl NatsUrl {
    fn parse(url: &str) -> Result<Self, TransportError> {
        let invalid = |reason: &str| TransportError::InvalidUrl {
            url: redact_url(url),
            reason: reason.to_owned(),
        };
        let mut servers = Vec::new();
        let mut user = None;
        for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (scheme, rest) = part.split_once("://").unwrap_or(("nats", part));
            if scheme != "nats" && scheme != "tls" {
                return Err(invalid("expected nats:// or tls:// servers"));
            }
            let hostport = match rest.rsplit_once('@') {
                Some((userinfo, hostport)) => {
                    let decode = |s: &str| {
                        let decoded = percent_encoding::percent_decode_str(s);
                        decoded.decode_utf8_lossy().into_owned()
                    };
                    let (name, pass) = match userinfo.split_once(':') {
                        Some((name, pass)) => (decode(name), Some(decode(pass))),
                        None => (decode(userinfo), None),
                    };
                    user.get_or_insert((name, pass));
                    hostport
                }
                None => rest,
            };
            let addr = format!("{scheme}://{hostport}").parse::<ServerAddr>();
            servers.push(addr.map_err(|_| invalid("bad server address"))?);
        }
        if servers.is_empty() {
            return Err(invalid("no server"));
        }
        Ok(Self { servers, user })
    }
}

/// Builds clients whose events come to the supervisor.
struct Connector {
    servers: NatsUrl,
    settings: Settings,
    events_tx: mpsc::UnboundedSender<Event>,
}

impl Connector {
    fn options(&self) -> ConnectOptions {
        let events = self.events_tx.clone();
        let mut options = ConnectOptions::new()
            .name("herald")
            .connection_timeout(self.settings.connect_timeout)
            .reconnect_delay_callback(backoff::delay)
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            });
        options = match &self.servers.user {
            Some((name, Some(pass))) => options.user_and_password(name.clone(), pass.clone()),
            Some((token, None)) => options.token(token.clone()),
            None => options,
        };
        if let Some(path) = &self.settings.tls_ca {
            options = options.add_root_certificates(path.clone());
        }
        options
    }

    async fn open(&self) -> Result<Client, async_nats::ConnectError> {
        self.options().connect(self.servers.servers.clone()).await
    }
}

/// Owns the client, the subscriptions and the link.
struct Supervisor {
    connector: Connector,
    endpoint: Arc<Endpoint>,
}

impl Supervisor {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn settings(&self) -> &Settings {
        &self.connector.settings
    }

    async fn run(
        self,
        first: Option<Client>,
        mut queue: mpsc::Receiver<Outgoing>,
        mut events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
    ) {
        let url = redact_url(&self.settings().url);
        let client = match first {
            Some(client) => client,
            None => match self.first_connect(&url, &shutdown).await {
                Some(client) => client,
                None => return,
            },
        };
        let subject = format!("_herald.link.{:016x}", rand::random::<u64>());
        let echo = match client.subscribe(subject.clone()).await {
            Ok(echo) => Echo {
                subject,
                echo,
                seq: 0,
                pending: None,
            },
            Err(e) => {
                tracing::warn!(%url, cause = %e, "nats client closed before it started");
                return;
            }
        };
        let mut session = Session {
            client: &client,
            subscribed: HashMap::new(),
            messages: SelectAll::new(),
            echo,
            down_since: Instant::now(),
        };
        self.reconcile(&mut session).await;
        if !self.endpoint().is_up() {
            self.confirm(&mut session).await;
        }
        let receive = self.receive(&mut session, &mut events, &shutdown);
        let write = self.write(&client, &mut queue, &shutdown);
        tokio::join!(receive, write);
    }

    /// Retries the first connect with backoff; None on shutdown.
    async fn first_connect(&self, url: &str, shutdown: &CancellationToken) -> Option<Client> {
        for failures in 1.. {
            let attempt = timeout(self.settings().connect_timeout, self.connector.open());
            let opened = tokio::select! {
                () = shutdown.cancelled() => return None,
                opened = attempt => opened,
            };
            let cause = match opened {
                Ok(Ok(client)) => return Some(client),
                Ok(Err(e)) => redact_text(&e.to_string(), &self.settings().url),
                Err(_) => "timed out".to_owned(),
            };
            if failures == 1 {
                tracing::warn!(%url, %cause, "nats unreachable; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = sleep(backoff::delay(failures)) => {}
            }
        }
        None
    }

    /// Forwards messages, applies subscription changes and follows the client's events.
    async fn receive(
        &self,
        session: &mut Session<'_>,
        events: &mut mpsc::UnboundedReceiver<Event>,
        shutdown: &CancellationToken,
    ) {
        let url = redact_url(&self.settings().url);
        let mut retry = tokio::time::interval(CONFIRM_EVERY);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                Some(message) = session.messages.next() => {
                    self.endpoint().deliver(message.subject.to_string(), message.payload);
                }
                Some(message) = session.echo.echo.next() => {
                    if session.echo.pending.as_ref() == Some(&message.payload) {
                        session.echo.pending = None;
                        self.go_up(session);
                    }
                }
                Some(event) = events.recv() => match event {
                    Event::Disconnected if self.endpoint().set_link(Link::Down) => {
                        session.down_since = Instant::now();
                        tracing::warn!(%url, "nats link down; the client reconnects");
                    }
                    Event::Connected => self.confirm(session).await,
                    Event::SlowConsumer(_) => self.endpoint().counters().add_inbound_dropped(),
                    _ => {}
                },
                () = self.endpoint().wanted_changed() => self.reconcile(session).await,
                // A confirmation lost on a live connection is tried again.
                _ = retry.tick(), if !self.endpoint().is_up() => {
                    if session.client.connection_state() == State::Connected {
                        self.confirm(session).await;
                    }
                }
            }
        }
    }

    /// Asks the server to prove it has every subscription: the client queues its SUBs before
    /// anything we send after a (re)connect, and the server handles one connection's messages
    /// in order, so our own echo coming back means the SUBs are in place. The link goes Up
    /// when it does (see `receive`); waiting never blocks the loop.
    async fn confirm(&self, session: &mut Session<'_>) {
        let echo = &mut session.echo;
        echo.seq += 1;
        let want = Bytes::from(echo.seq.to_string());
        let sent = session.client.publish(echo.subject.clone(), want.clone());
        echo.pending = sent.await.is_ok().then_some(want);
    }

    fn go_up(&self, session: &Session<'_>) {
        if self.endpoint().set_link(Link::Up) {
            let url = redact_url(&self.settings().url);
            let down_ms = session.down_since.elapsed().as_millis() as u64;
            tracing::info!(%url, down_ms, "nats link up");
        }
    }

    /// Hands queued publishes to the client, in order.
    async fn write(
        &self,
        client: &Client,
        queue: &mut mpsc::Receiver<Outgoing>,
        shutdown: &CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                n = queue.recv_many(&mut batch, BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let stats = self.endpoint().counters();
            for message in batch.drain(..) {
                match client.publish(message.topic, message.payload).await {
                    Ok(()) => stats.add_published(1),
                    Err(_) => stats.add_publish_dropped(1),
                }
            }
            if !self.endpoint().is_up() {
                // The client buffers while reconnecting; what we still hold is for a dead link.
                self.endpoint().drop_queued(queue);
            }
        }
    }

    /// Subscribes and unsubscribes so the client matches what callers want. Dropping a
    /// subscription's stream (its token cancelled) sends the UNSUB.
    async fn reconcile(&self, session: &mut Session<'_>) {
        let current = session.subscribed.keys().cloned().collect();
        let (add, remove) = self.endpoint().changes(&current);
        for topic in remove {
            if let Some(token) = session.subscribed.remove(&topic) {
                token.cancel();
            }
        }
        for topic in add {
            match session.client.subscribe(topic.clone()).await {
                Ok(subscriber) => {
                    let token = CancellationToken::new();
                    let until = Box::pin(token.clone().cancelled_owned());
                    session.messages.push(subscriber.take_until(until));
                    session.subscribed.insert(topic, token);
                }
                // Only a closed client refuses; shutdown is under way.
                Err(e) => tracing::debug!(cause = %e, "nats subscribe failed"),
            }
        }
    }
}

/// The state of the one client a supervisor drives.
struct Session<'a> {
    client: &'a Client,
    subscribed: HashMap<String, CancellationToken>,
    messages: Messages,
    echo: Echo,
    down_since: Instant,
}

/// A subscription to a subject of our own, used to prove a round trip through the server.
struct Echo {
    subject: String,
    echo: async_nats::Subscriber,
    seq: u64,
    /// The payload whose return sets the link Up.
    pending: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::NatsUrl;

    #[test]
    fn server_lists_take_credentials_out_of_the_addresses() {
        let url = NatsUrl::parse("nats://u:p%40ss@a:4222, tls://b:4223,c").expect("valid");
        let servers: Vec<_> = url
            .servers
            .iter()
            .map(|s| s.as_url_str().to_owned())
            .collect();
        assert_eq!(servers, ["nats://a:4222", "tls://b:4223", "nats://c"]);
        assert_eq!(url.user, Some(("u".into(), Some("p@ss".into()))));
        assert!(NatsUrl::parse("redis://a:6379").is_err());
        assert!(NatsUrl::parse(" , ").is_err());
    }
}
