//! HTTPS for the REST API, the dashboard and `/metrics`: rustls with the ring
//! provider (the one QUIC uses), HTTP/1.1 only. A port that serves TLS speaks nothing
//! else: a plain-HTTP request there is answered `400` by this module, before any
//! handler, so no bearer token sent in clear is ever looked at.

use std::sync::Arc;

pub use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain-HTTP client gets on a TLS port.
const PLAIN_HTTP_REFUSED: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 49\r\n\r\nthis port speaks HTTPS only: use an https:// URL\n";

/// A TLS server configuration for `chain` (leaf first) and `key`.
pub fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS stream of a new connection; `None` if it closed first or spoke plain HTTP
/// (answered with a `400` here, then closed).
pub(crate) async fn accept(acceptor: &TlsAcceptor, mut stream: TcpStream) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != TLS_HANDSHAKE {
        stream.write_all(PLAIN_HTTP_REFUSED).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing with unread data would
        // reset the connection, and the client could lose the answer. The caller's
        // timeout bounds this.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(PLAIN_HTTP_REFUSED).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|n| n.parse().ok()).expect("length");
        assert_eq!(length, body.len());
    }
}
