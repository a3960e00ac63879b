//! A tiny WebSocket client (masked frames out, pings answered, fragments joined): the
//! DevTools protocol's transport.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub(crate) struct WebSocket {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl WebSocket {
    pub(crate) fn connect(url: &str) -> Self {
        let rest = url.strip_prefix("ws://").unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("connect to the DevTools socket {url}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(90))).expect("read timeout");
        let mut writer = stream.try_clone().expect("clone stream");
        // No Origin header: Chromium refuses DevTools connections from web origins.
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: d2Vpci1kYXNoYm9hcmQtdA==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        writer.write_all(req.as_bytes()).expect("websocket handshake");
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("handshake status");
        assert!(status.contains(" 101 "), "the DevTools socket {url} refused the upgrade: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("handshake header");
            if line.trim().is_empty() {
                break;
            }
        }
        Self { reader, writer }
    }

    pub(crate) fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("websocket write");
    }

    /// The next complete text message (pings answered, fragments joined).
    pub(crate) fn recv(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.reader.read_exact(&mut h).expect("websocket read (did the browser die or hang?)");
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0F);
            let mut len = u64::from(h[1] & 0x7F);
            if len == 126 {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).expect("websocket read");
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).expect("websocket read");
                len = u64::from_be_bytes(b);
            }
            let mask = if h[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.reader.read_exact(&mut m).expect("websocket read");
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("frame size")];
            self.reader.read_exact(&mut payload).expect("websocket read");
            if let Some(m) = mask {
                payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x9 => self.send(0xA, &payload),
                0xA => {}
                0x8 => panic!("the browser closed the DevTools socket"),
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("DevTools messages are UTF-8");
                    }
                }
            }
        }
    }
}
