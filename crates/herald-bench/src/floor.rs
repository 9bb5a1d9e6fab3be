//! `floor`: the machine's limit for fan-out, not a server. It accepts Pusher connections,
//! confirms any subscription, and on every HTTP trigger writes one pre-encoded frame to every
//! socket in a plain loop (no channels, no queues, no auth): what fan-out costs at minimum.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, BytesMut};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::ws::parse;

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Loopback port to listen on.
    #[arg(long, default_value_t = 6198)]
    pub port: u16,
    /// Stop by itself after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub lifetime: u64,
}

type Sockets = Arc<Mutex<Vec<OwnedWriteHalf>>>;

pub async fn floor(a: FloorArgs) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", a.port)).await?;
    let sockets: Sockets = Arc::default();
    let serve = async {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let sockets = sockets.clone();
            tokio::spawn(async move {
                let _ = serve_one(stream, sockets).await;
            });
        }
    };
    let lifetime = tokio::time::sleep(std::time::Duration::from_secs(a.lifetime));
    tokio::select! {
        r = serve => r,
        () = lifetime => Ok(()),
    }
}

async fn serve_one(mut stream: TcpStream, sockets: Sockets) -> Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(p) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf.split_to(head_end)).into_owned();
        if head.starts_with("GET /app/") {
            return websocket(stream, buf, sockets).await;
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < length {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body = buf.split_to(length);
        broadcast(&body, &sockets)?;
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .await?;
    }
}

/// Encodes the trigger's event once and writes it to every socket without waiting.
fn broadcast(body: &[u8], sockets: &Sockets) -> Result<()> {
    let request: serde_json::Value = serde_json::from_slice(body)?;
    let channel = request["channels"][0].as_str().unwrap_or("bench");
    let text = serde_json::json!({
        "event": request["name"], "channel": channel, "data": request["data"],
    })
    .to_string();
    let frame = server_frame(text.as_bytes());
    let sockets = sockets.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    for socket in sockets.iter() {
        // A full socket buffer drops the frame: the floor does not queue.
        let _ = socket.try_write(&frame);
    }
    Ok(())
}

fn server_frame(payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    out.put_u8(0x81);
    if payload.len() < 126 {
        out.put_u8(payload.len() as u8);
    } else {
        out.put_u8(126);
        out.put_u16(payload.len() as u16);
    }
    out.put_slice(payload);
    out
}

async fn websocket(mut stream: TcpStream, mut buf: BytesMut, sockets: Sockets) -> Result<()> {
    // Only herald-bench connects here, and it does not check Sec-WebSocket-Accept.
    stream
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
        .await?;
    let established = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}"#;
    stream
        .write_all(&server_frame(established.as_bytes()))
        .await?;
    let frame = loop {
        if let Some((_, frame)) = parse(&mut buf)? {
            break frame;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("closed before subscribing");
        }
    };
    let subscribe: serde_json::Value = serde_json::from_slice(&frame.payload)?;
    let channel = subscribe["data"]["channel"]
        .as_str()
        .context("no channel")?;
    let ok = serde_json::json!({
        "event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}",
    });
    stream
        .write_all(&server_frame(ok.to_string().as_bytes()))
        .await?;
    let (mut read, write) = stream.into_split();
    sockets
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(write);
    // Drain whatever the client sends until it goes.
    let mut sink = [0u8; 1024];
    while read.read(&mut sink).await? > 0 {}
    Ok(())
}
