//! A lean WebSocket client for the Pusher protocol: hand-written upgrade and framing over a
//! `TcpStream` bound to a chosen source address, so 10,000 sockets cost the tool little CPU.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Buf, BufMut, BytesMut};
use herald_protocol::InboundFrame;
use herald_protocol::auth::{auth_token, channel_auth_string};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OP_CONT: u8 = 0;
pub const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;
/// Largest frame accepted from a server.
const MAX_FRAME: usize = 1 << 20;
/// Time allowed for one protocol step (handshake, subscription) before it counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect: the server's address and the app key.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub key: String,
}

/// One frame from the server; `payload` is unmasked.
pub struct Frame {
    pub opcode: u8,
    pub payload: BytesMut,
}

impl Frame {
    pub fn text(&self) -> &[u8] {
        &self.payload
    }
}

/// An open Pusher connection, past `pusher:connection_established`.
pub struct WsConn {
    stream: TcpStream,
    buf: BytesMut,
    partial: Option<Frame>,
    mask_state: u32,
    pub socket_id: String,
}

impl WsConn {
    /// TCP connect (from `source` when given), WebSocket upgrade, `connection_established`.
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> Result<Self> {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind {ip}"))?;
        }
        let stream = socket.connect(target.addr).await.context("connect")?;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            stream,
            buf: BytesMut::with_capacity(4096),
            partial: None,
            mask_state: rand_seed(),
            socket_id: String::new(),
        };
        tokio::time::timeout(STEP_TIMEOUT, conn.handshake(target))
            .await
            .map_err(|_| anyhow!("handshake timed out"))??;
        Ok(conn)
    }

    async fn handshake(&mut self, target: &Target) -> Result<()> {
        let request = format!(
            "GET /app/{}?protocol=7&client=herald-bench&version=0.1.0&flash=false HTTP/1.1\r\n\
             Host: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: aGVyYWxkLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.key, target.addr
        );
        self.stream.write_all(request.as_bytes()).await?;
        let end = loop {
            if let Some(pos) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if self.buf.len() > 16 * 1024 {
                bail!("upgrade response too long");
            }
            self.fill().await?;
        };
        let head = self.buf.split_to(end);
        if !head.starts_with(b"HTTP/1.1 101") {
            let line = head[..].split(|&b| b == b'\r').next().unwrap_or_default();
            bail!("upgrade refused: {}", String::from_utf8_lossy(line));
        }
        let frame = self.next_event().await?;
        if frame.event != "pusher:connection_established" {
            bail!("first frame was {}", frame.event);
        }
        let data = frame.data_json().unwrap_or_default();
        self.socket_id = data["socket_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no socket_id"))?
            .to_owned();
        Ok(())
    }

    async fn fill(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8192);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            bail!("connection closed by server");
        }
        Ok(())
    }

    /// The next data or close frame; answers WebSocket pings. Cancel-safe only between
    /// frames that need no reply (a ping's pong is written before returning).
    pub async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            while let Some((fin, frame)) = parse(&mut self.buf)? {
                match frame.opcode {
                    OP_PING => self.send_frame(OP_PONG, &frame.payload).await?,
                    OP_PONG => {}
                    OP_CONT => {
                        let Some(partial) = self.partial.as_mut() else {
                            bail!("continuation without a first frame");
                        };
                        partial.payload.extend_from_slice(&frame.payload);
                        if fin {
                            return self.partial.take().ok_or_else(|| anyhow!("no frame"));
                        }
                    }
                    OP_TEXT | OP_BINARY if !fin => self.partial = Some(frame),
                    _ => return Ok(frame),
                }
            }
            self.fill().await?;
        }
    }

    /// The next Pusher frame, parsed; answers `pusher:ping`.
    pub async fn next_event(&mut self) -> Result<InboundFrame> {
        loop {
            let frame = self.next_frame().await?;
            match frame.opcode {
                OP_TEXT => {
                    let text = std::str::from_utf8(frame.text())?;
                    let event = InboundFrame::parse(text)?;
                    if event.event == "pusher:ping" {
                        self.send_text(r#"{"event":"pusher:pong","data":{}}"#)
                            .await?;
                        continue;
                    }
                    return Ok(event);
                }
                OP_CLOSE => bail!("closed by server: {}", close_reason(&frame.payload)),
                _ => {}
            }
        }
    }

    /// Subscribes to `channel` (signing private channels) and waits for success.
    pub async fn subscribe(&mut self, channel: &str, target: &Target, secret: &str) -> Result<()> {
        self.subscribe_as(channel, target, secret, None).await
    }

    /// Subscribes to `channel` and waits for success; a presence channel is joined as
    /// `user` (required there).
    pub async fn subscribe_as(
        &mut self,
        channel: &str,
        target: &Target,
        secret: &str,
        user: Option<&str>,
    ) -> Result<()> {
        let mut data = serde_json::json!({"channel": channel, "auth": ""});
        if channel.starts_with("presence-") {
            let user = user.ok_or_else(|| anyhow!("presence channel {channel} needs a user"))?;
            let channel_data = serde_json::json!({"user_id": user}).to_string();
            let signed = channel_auth_string(&self.socket_id, channel, Some(&channel_data));
            data["auth"] = auth_token(&target.key, secret, &signed).into();
            data["channel_data"] = channel_data.into();
        } else if channel.starts_with("private-") {
            let signed = channel_auth_string(&self.socket_id, channel, None);
            data["auth"] = auth_token(&target.key, secret, &signed).into();
        }
        let frame = serde_json::json!({"event": "pusher:subscribe", "data": data});
        self.send_text(&frame.to_string()).await?;
        let wait = async {
            loop {
                let event = self.next_event().await?;
                match event.event.as_str() {
                    "pusher_internal:subscription_succeeded" => return Ok(()),
                    "pusher:error" | "pusher:subscription_error" => {
                        bail!(
                            "subscribe {channel}: {}",
                            event.data_text().unwrap_or_default()
                        )
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("subscription timed out"))?
    }

    /// Leaves `channel` (no answer is expected).
    pub async fn unsubscribe(&mut self, channel: &str) -> Result<()> {
        let frame =
            serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": channel}});
        self.send_text(&frame.to_string()).await
    }

    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_frame(OP_TEXT, text.as_bytes()).await
    }

    /// Sends a masked frame, as clients must.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut out = BytesMut::with_capacity(payload.len() + 14);
        out.put_u8(0x80 | opcode);
        match payload.len() {
            n if n < 126 => out.put_u8(0x80 | n as u8),
            n if n <= 0xffff => {
                out.put_u8(0x80 | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(0x80 | 127);
                out.put_u64(n as u64);
            }
        }
        self.mask_state ^= self.mask_state << 13;
        self.mask_state ^= self.mask_state >> 17;
        self.mask_state ^= self.mask_state << 5;
        let mask = self.mask_state.to_be_bytes();
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Close handshake: send 1000, wait for the server's close frame or EOF.
    pub async fn close(mut self) -> Result<()> {
        self.send_frame(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        let wait = async {
            loop {
                match self.next_frame().await {
                    Ok(frame) if frame.opcode == OP_CLOSE => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("closed by server") => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, wait)
            .await
            .map_err(|_| anyhow!("close timed out"))?
    }
}

/// `code reason` of a close frame payload.
pub fn close_reason(payload: &[u8]) -> String {
    if payload.len() < 2 {
        return "no code".into();
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    format!("{code} {}", String::from_utf8_lossy(&payload[2..]))
}

/// Splits one complete frame off `buf`, with its FIN bit.
pub fn parse(buf: &mut BytesMut) -> Result<Option<(bool, Frame)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    let (len, mut header) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(raw) as usize, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > MAX_FRAME {
        bail!("frame of {len} bytes");
    }
    let mask_at = header;
    if masked {
        header += 4;
    }
    if buf.len() < header + len {
        if buf.capacity() < header + len {
            buf.reserve(header + len - buf.len());
        }
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    if masked {
        mask.copy_from_slice(&buf[mask_at..mask_at + 4]);
    }
    buf.advance(header);
    let mut payload = buf.split_to(len);
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    let frame = Frame {
        opcode: b0 & 0x0f,
        payload,
    };
    Ok(Some((b0 & 0x80 != 0, frame)))
}

fn rand_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    nanos | 1
}

/// The `~t<micros>` timestamp a bench payload carries, if the frame has one.
pub fn stamp(text: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(text, b"~t")? + 2;
    let digits = &text[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// A payload of exactly `size` bytes (at least the stamp) carrying the current time.
pub fn payload(size: usize, seq: u64) -> String {
    let mut text = format!("~t{}~s{seq}~", crate::procstat::now_micros());
    while text.len() < size {
        text.push('x');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unmasked_and_fragmented_frames() -> Result<()> {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0x81, 3, b'a', b'b', b'c', 0x01, 1, b'x']);
        let (fin, frame) = parse(&mut buf)?.ok_or_else(|| anyhow!("frame"))?;
        assert!(fin);
        assert_eq!((frame.opcode, &frame.payload[..]), (OP_TEXT, &b"abc"[..]));
        let (fin, frame) = parse(&mut buf)?.ok_or_else(|| anyhow!("frame"))?;
        assert!(!fin);
        assert_eq!(frame.opcode, OP_TEXT);
        assert!(parse(&mut buf)?.is_none());
        let mut long = BytesMut::new();
        long.extend_from_slice(&[0x81, 126, 0, 200]);
        long.extend_from_slice(&[b'y'; 199]);
        assert!(parse(&mut long)?.is_none());
        long.extend_from_slice(b"y");
        let (_, frame) = parse(&mut long)?.ok_or_else(|| anyhow!("frame"))?;
        assert_eq!(frame.payload.len(), 200);
        Ok(())
    }

    #[test]
    fn stamps_round_trip() {
        let text = payload(100, 7);
        assert_eq!(text.len(), 100);
        let frame = format!(r#"{{"event":"bench","channel":"c","data":"{text}"}}"#);
        let t = stamp(frame.as_bytes()).unwrap_or(0);
        assert!(t.abs_diff(crate::procstat::now_micros()) < 10_000_000);
    }
}
