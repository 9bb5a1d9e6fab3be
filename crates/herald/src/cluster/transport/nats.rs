//! NATS core pub/sub. The client reconnects and resubscribes by itself; we map its events to
//! [`Link`], saying Up only when an echo of our own proves the server has the subscriptions
//! again. Until the first connect (degraded start) we retry ourselves.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures_util::stream::{SelectAll, StreamExt, TakeUntil};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

use super::endpoint::{Endpoint, Outgoing};
use super::redact::{redact_text, redact_url};
use super::{Inbound, Link, Settings, TransportError, backoff};

/// Publishes handed to the client per turn of the writer.
const BATCH: usize = 512;
/// How often the client pings the server, so a half-open connection is noticed.
const PING_EVERY: Duration = Duration::from_secs(10);
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
        // Startup tries every server within `connect_timeout`: a blackholed first server must
        // not use up the whole budget.
        let servers = self.servers.servers.len().max(1) as u32;
        let per_server = (self.settings.connect_timeout / servers).max(Duration::from_millis(500));
        let mut options = ConnectOptions::new()
            .name("herald")
            .connection_timeout(per_server)
            .ping_interval(PING_EVERY)
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
    fn settings(&self) -> &Settings {
        &self.connector.settings
    }

    fn url(&self) -> String {
        redact_url(&self.settings().url)
    }

    /// Three loops share the client: `receive` (messages and subscriptions), `follow` (the
    /// link) and `write` (publishes). None waits on another, so a subscribe stuck behind a
    /// dead connection cannot hide the Disconnected event.
    async fn run(
        self,
        first: Option<Client>,
        mut queue: mpsc::Receiver<Outgoing>,
        events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
    ) {
        let client = match first {
            Some(client) => client,
            None => match self.first_connect(&shutdown).await {
                Some(client) => client,
                None => return,
            },
        };
        let subject = format!("_herald.link.{:016x}", rand::random::<u64>());
        let echo = match client.subscribe(subject.clone()).await {
            Ok(subscriber) => Echo {
                subject,
                subscriber,
                sent: 0,
                valid_after: 0,
            },
            Err(e) => {
                tracing::warn!(url = %self.url(), cause = %e, "nats client closed at start");
                return;
            }
        };
        // False while subscription changes are on their way to the client.
        let (settled_tx, settled) = watch::channel(false);
        let receive = self.receive(&client, &settled_tx, &shutdown);
        let follow = self.follow(&client, echo, events, settled, &shutdown);
        let write = self.write(&client, &mut queue, &shutdown);
        tokio::join!(receive, follow, write);
    }

    /// Retries the first connect with backoff; None on shutdown.
    async fn first_connect(&self, shutdown: &CancellationToken) -> Option<Client> {
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
                tracing::warn!(url = %self.url(), %cause, "nats unreachable; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = sleep(backoff::delay(failures)) => {}
            }
        }
        None
    }

    /// Forwards messages and applies subscription changes.
    async fn receive(
        &self,
        client: &Client,
        settled: &watch::Sender<bool>,
        shutdown: &CancellationToken,
    ) {
        let mut subscribed = HashMap::new();
        let mut messages = SelectAll::new();
        self.reconcile(client, &mut subscribed, &mut messages).await;
        settled.send_replace(true);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                Some(message) = messages.next() => {
                    self.endpoint.deliver(message.subject.to_string(), message.payload);
                }
                () = self.endpoint.wanted_changed() => {
                    settled.send_replace(false);
                    self.reconcile(client, &mut subscribed, &mut messages).await;
                    settled.send_replace(true);
                }
            }
        }
    }

    /// Maps the client's events to the link. After a (re)connect the link goes Up once the
    /// server has proved it holds every subscription: the client queues its SUBs (and ours,
    /// once `settled`) before our echo, and the server handles one connection's messages in
    /// order, so our own echo coming back means the SUBs are in place.
    async fn follow(
        &self,
        client: &Client,
        mut echo: Echo,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut settled: watch::Receiver<bool>,
        shutdown: &CancellationToken,
    ) {
        let mut down_since = Instant::now();
        let mut confirm = !self.endpoint.is_up();
        let mut retry = tokio::time::interval(CONFIRM_EVERY);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                Some(event) = events.recv() => match event {
                    Event::Disconnected => {
                        (confirm, echo.valid_after) = (false, echo.sent);
                        if self.endpoint.set_link(Link::Down) {
                            down_since = Instant::now();
                            tracing::warn!(url = %self.url(), "nats link down; the client reconnects");
                        }
                    }
                    Event::Connected => confirm = true,
                    Event::SlowConsumer(_) => self.endpoint.counters().add_inbound_dropped(),
                    _ => {}
                },
                Some(message) = echo.subscriber.next() => {
                    let seq = std::str::from_utf8(&message.payload).ok().and_then(|s| s.parse().ok());
                    if seq.is_some_and(|seq: u64| seq > echo.valid_after) {
                        self.go_up(down_since);
                    }
                }
                true = async { settled.wait_for(|s| *s).await.is_ok() }, if confirm => {
                    confirm = false;
                    echo.sent += 1;
                    let payload = Bytes::from(echo.sent.to_string());
                    let _ = client.publish(echo.subject.clone(), payload).await;
                }
                // An echo lost on a live connection is sent again; any that returns counts.
                _ = retry.tick(), if !self.endpoint.is_up() => {
                    confirm |= client.connection_state() == State::Connected;
                }
            }
        }
    }

    fn go_up(&self, down_since: Instant) {
        if self.endpoint.set_link(Link::Up) {
            let down_ms = down_since.elapsed().as_millis() as u64;
            tracing::info!(url = %self.url(), down_ms, "nats link up");
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
            let stats = self.endpoint.counters();
            for message in batch.drain(..) {
                match client.publish(message.topic, message.payload).await {
                    Ok(()) => stats.add_published(1),
                    Err(_) => stats.add_publish_dropped(1),
                }
            }
            if !self.endpoint.is_up() {
                // The client buffers while reconnecting; what we still hold is for a dead link.
                self.endpoint.drop_queued(queue);
            }
        }
    }

    /// Subscribes and unsubscribes so the client matches what callers want. Dropping a
    /// subscription's stream (its token cancelled) sends the UNSUB.
    async fn reconcile(
        &self,
        client: &Client,
        subscribed: &mut HashMap<String, CancellationToken>,
        messages: &mut Messages,
    ) {
        let current = subscribed.keys().cloned().collect();
        let (add, remove) = self.endpoint.changes(&current);
        for topic in remove {
            if let Some(token) = subscribed.remove(&topic) {
                token.cancel();
            }
        }
        for topic in add {
            match client.subscribe(topic.clone()).await {
                Ok(subscriber) => {
                    let token = CancellationToken::new();
                    let until = Box::pin(token.clone().cancelled_owned());
                    messages.push(subscriber.take_until(until));
                    subscribed.insert(topic, token);
                }
                // Only a closed client refuses; shutdown is under way.
                Err(e) => tracing::debug!(cause = %e, "nats subscribe failed"),
            }
        }
    }
}

/// A subscription to a subject of our own, used to prove a round trip through the server.
struct Echo {
    subject: String,
    subscriber: async_nats::Subscriber,
    /// Echoes are numbered; the last one sent.
    sent: u64,
    /// Echoes numbered above this were sent after the last disconnect, so their return
    /// proves the current connection's subscriptions.
    valid_after: u64,
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
