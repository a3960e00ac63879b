//! rustls + quinn configuration: TLS 1.3 only, mutual authentication against the
//! cluster CA, ALPN `weir/0`. There is deliberately no constructor for an
//! unauthenticated or plaintext config.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use crate::identity::{CaCert, NodeIdentity};

/// The only application protocol we speak; bump it when the wire format changes.
pub const ALPN: &[u8] = b"weir/0";

/// Transport tuning shared by both sides of every connection.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Largest frame payload sent or accepted (default 16 MiB).
    pub max_frame: u32,
    /// Per-stream receive window in bytes: how far a data-stream sender may run ahead
    /// of a consumer that stops reading. This is the backpressure bound.
    pub stream_window: u32,
    /// Concurrent peer-opened unidirectional (data) streams per connection.
    pub max_data_streams: u32,
    /// Concurrent peer-opened bidirectional (control) streams per connection.
    pub max_control_streams: u32,
    /// A silent connection is closed after this long.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be well below `idle_timeout`.
    pub keep_alive: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_frame: crate::frame::DEFAULT_MAX_FRAME,
            // 1 MiB is ~30 batches of 32 KiB in flight per channel: enough to fill a
            // LAN pipe, small enough that hundreds of channels stay bounded in memory.
            stream_window: 1024 * 1024,
            max_data_streams: 1024,
            max_control_streams: 64,
            // A peer that vanished without closing (SIGKILL, a pulled cable) is noticed
            // within this much: TaskManagers learn of a dead JobManager this way, and
            // it should stay in the range of the JobManager's heartbeat timeout.
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
        }
    }
}

/// Errors building TLS configs (bad key or certificate material).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the certificates or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls produced a config quinn cannot use (not expected with our settings).
    #[error("QUIC crypto: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A transport parameter is out of range.
    #[error("transport config: {0}")]
    Transport(String),
}

/// ring only: we never let the process-wide default provider decide.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CaCert) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    Ok(Arc::new(roots))
}

fn transport(cfg: &NetConfig) -> Result<Arc<quinn::TransportConfig>, TlsError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout).map_err(|e| TlsError::Transport(e.to_string()))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(cfg.keep_alive))
        .stream_receive_window(cfg.stream_window.into())
        .max_concurrent_uni_streams(cfg.max_data_streams.into())
        .max_concurrent_bidi_streams(cfg.max_control_streams.into());
    Ok(Arc::new(t))
}

/// Server side: presents `id`, requires a client certificate chaining to `ca`.
pub(crate) fn server_config(id: &NodeIdentity, ca: &CaCert, cfg: &NetConfig) -> Result<quinn::ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain().to_vec(), id.key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server.transport_config(transport(cfg)?);
    Ok(server)
}

/// Client side: verifies the server against `ca` (name [`crate::CLUSTER_SERVER_NAME`])
/// and presents `id` when asked.
pub(crate) fn client_config(id: &NodeIdentity, ca: &CaCert, cfg: &NetConfig) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(id.chain().to_vec(), id.key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    client.transport_config(transport(cfg)?);
    Ok(client)
}
