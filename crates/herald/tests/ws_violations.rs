//! WebSocket-level protocol violations get the RFC 6455 close code (1002, 1007), not a
//! dropped TCP connection, and other clients are unaffected.

#![allow(clippy::unwrap_used)]

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client that speaks raw frames, to send what no WebSocket library would.
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Upgrades and reads `connection_established`.
    async fn connect(server: &TestServer) -> Self {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        let mut client = Self { stream };
        let (opcode, payload) = client.frame().await;
        assert_eq!(opcode, 1);
        assert!(String::from_utf8_lossy(&payload).contains("connection_established"));
        client
    }

    /// One server frame: opcode and payload (servers never mask).
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        let read = async {
            let mut head = [0; 2];
            self.stream.read_exact(&mut head).await?;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                n => u64::from(n),
            };
            let mut payload = vec![0; len as usize];
            self.stream.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>((head[0] & 0x0f, payload))
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("a frame in time")
            .expect("a frame, not a dropped connection")
    }

    /// Reads frames until the close frame; returns its status code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.frame().await;
            if opcode == 8 {
                assert!(payload.len() >= 2, "a close frame with a status code");
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}

/// A frame with the given first byte, masked unless `masked` is false.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut bytes = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        bytes.extend_from_slice(&[0, 0, 0, 0]);
    }
    bytes.extend_from_slice(payload);
    bytes
}

async fn assert_others_unaffected(server: &TestServer) {
    let mut other = server.client().await;
    other.subscribe("bystanders").await;
    assert_event_within_100ms(server, &mut other, "bystanders").await;
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client
        .send_raw(&frame(0x81, br#"{"event":"pusher:ping"}"#, false))
        .await;
    assert_eq!(client.close_code().await, 1002);
    assert_others_unaffected(&server).await;
}

#[tokio::test]
async fn reserved_bits_close_with_1002() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    // RSV1 set without a negotiated extension.
    client
        .send_raw(&frame(0xC1, br#"{"event":"pusher:ping"}"#, true))
        .await;
    assert_eq!(client.close_code().await, 1002);
    assert_others_unaffected(&server).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    client
        .send_raw(&frame(0x81, b"{\"event\":\"\xff\xfe\"}", true))
        .await;
    assert_eq!(client.close_code().await, 1007);
    assert_others_unaffected(&server).await;
}

#[tokio::test]
async fn fragmented_frames_are_reassembled_and_a_bad_continuation_closes_with_1002() {
    let server = TestServer::start().await;
    let mut client = RawClient::connect(&server).await;
    // A ping split over three fragments is one message.
    let ping = br#"{"event":"pusher:ping","data":{}}"#;
    client.send_raw(&frame(0x01, &ping[..5], true)).await;
    client.send_raw(&frame(0x00, &ping[5..20], true)).await;
    client.send_raw(&frame(0x80, &ping[20..], true)).await;
    let (opcode, payload) = client.frame().await;
    assert_eq!(opcode, 1);
    assert!(String::from_utf8_lossy(&payload).contains("pusher:pong"));
    // A continuation with no message to continue.
    client.send_raw(&frame(0x80, b"stray", true)).await;
    assert_eq!(client.close_code().await, 1002);
    assert_others_unaffected(&server).await;
}
