//! Cluster identity: one CA per cluster, one certificate per node, all as PEM files.
//!
//! Every node certificate carries the fixed DNS name [`CLUSTER_SERVER_NAME`] so that TLS
//! name checks do not depend on addresses (nodes move, addresses get reused); who a node
//! is comes from its subject common name, which only the CA key holder can assign.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The DNS name in every node certificate, and the name clients ask for.
pub const CLUSTER_SERVER_NAME: &str = "weir.cluster";

/// Common name prefix of a cluster CA certificate; a key fingerprint follows.
const CA_COMMON_NAME: &str = "Weir cluster CA";

/// File names inside an identity directory.
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const NODE_CERT_FILE: &str = "node.pem";
const NODE_KEY_FILE: &str = "node.key";

/// Failures creating, saving or loading identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Certificate or key generation/signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file is malformed or holds the wrong kind of object.
    #[error("{path}: invalid PEM: {reason}")]
    Pem {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate has no usable subject common name.
    #[error("certificate has no readable subject common name")]
    NoCommonName,
    /// A node name that cannot go into a certificate.
    #[error("invalid node name {0:?}: must be 1-64 printable ASCII characters")]
    BadName(String),
}

/// The cluster's trust root: the CA certificate every node must chain to.
///
/// This is all a node needs to verify peers; the CA key stays with whoever issues.
#[derive(Debug, Clone)]
pub struct CaCert {
    der: CertificateDer<'static>,
}

impl CaCert {
    /// The certificate in DER form.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Loads a CA certificate from a PEM file (e.g. `<dir>/ca.pem`).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let der = CertificateDer::from_pem_file(path).map_err(|e| pem_error(path, e))?;
        Ok(Self { der })
    }
}

/// The cluster certificate authority (certificate and signing key).
pub struct ClusterCa {
    cert: CaCert,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Generates a fresh CA (ECDSA P-256 key, self-signed, may only sign node certs).
    pub fn generate() -> Result<Self, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        // A per-CA name: with one fixed name, a peer from another cluster would be
        // matched to our CA by name and refused as "BadSignature" instead of the
        // clearer "UnknownIssuer".
        let fingerprint: String = key.public_key_raw().iter().skip(1).take(8).map(|b| format!("{b:02x}")).collect();
        params.distinguished_name = common_name(&format!("{CA_COMMON_NAME} {fingerprint}"));
        // Path length 0: the CA signs node certificates, never intermediate CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Self { cert: CaCert { der: cert.der().clone() }, issuer: Issuer::new(params, key) })
    }

    /// The public CA certificate, to hand to every node.
    pub fn cert(&self) -> &CaCert {
        &self.cert
    }

    /// Issues a certificate for node `name` (its common name, reported by
    /// [`crate::Connection::peer_name`] on the other side), valid as TLS client and server.
    pub fn issue(&self, name: &str) -> Result<NodeIdentity, IdentityError> {
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(IdentityError::BadName(name.to_owned()));
        }
        let mut params = CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_owned()])?;
        params.distinguished_name = common_name(name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeIdentity { name: name.to_owned(), chain: vec![cert.der().clone()], key: PrivatePkcs8KeyDer::from(key.serialize_der()) })
    }

    /// Issues the REST API's certificate: valid for TLS servers only, for each of `names`
    /// (DNS names or IP addresses, as clients write them in URLs). Unlike a node
    /// certificate it names real addresses: browsers and HTTP clients check those.
    pub fn issue_server(&self, names: &[String]) -> Result<ServerIdentity, IdentityError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = common_name("weir rest api");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerIdentity { chain: vec![cert.der().clone()], key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) })
    }

    /// Writes `ca.pem` and `ca.key` (owner-only permissions) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        create_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), &pem("CERTIFICATE", &self.cert.der), false)?;
        write_file(&dir.join(CA_KEY_FILE), &self.issuer.key().serialize_pem(), true)
    }

    /// Loads a CA saved by [`ClusterCa::save`].
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let cert = CaCert::load(&dir.join(CA_CERT_FILE))?;
        let key_path = dir.join(CA_KEY_FILE);
        let key = KeyPair::from_pem(&read_file(&key_path)?).map_err(|e| IdentityError::Pem { path: key_path, reason: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_der(&cert.der, key)?;
        Ok(Self { cert, issuer })
    }
}

/// A node's credentials: its name, certificate chain (leaf first) and private key.
pub struct NodeIdentity {
    name: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for NodeIdentity {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl NodeIdentity {
    /// The node name (the certificate's subject common name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key, as rustls wants it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Writes `node.pem` (the chain) and `node.key` (owner-only) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        create_dir(dir)?;
        let chain: String = self.chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
        write_file(&dir.join(NODE_CERT_FILE), &chain, false)?;
        write_file(&dir.join(NODE_KEY_FILE), &pem("PRIVATE KEY", self.key.secret_pkcs8_der()), true)
    }

    /// Loads an identity saved by [`NodeIdentity::save`]; the name is read from the cert.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let cert_path = dir.join(NODE_CERT_FILE);
        let chain =
            CertificateDer::pem_file_iter(&cert_path).and_then(|it| it.collect::<Result<Vec<_>, _>>()).map_err(|e| pem_error(&cert_path, e))?;
        let leaf = chain.first().ok_or_else(|| IdentityError::Pem { path: cert_path.clone(), reason: "no certificate".into() })?;
        let name = cert_common_name(leaf)?;
        let key_path = dir.join(NODE_KEY_FILE);
        let key = PrivatePkcs8KeyDer::from_pem_file(&key_path).map_err(|e| pem_error(&key_path, e))?;
        Ok(Self { name, chain, key })
    }
}

/// A TLS server's certificate chain (leaf first) and key: the REST API's, issued by
/// [`ClusterCa::issue_server`] or given as PEM files.
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ServerIdentity {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8,
    /// PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, IdentityError> {
        let chain = CertificateDer::pem_file_iter(cert).and_then(|it| it.collect::<Result<Vec<_>, _>>()).map_err(|e| pem_error(cert, e))?;
        if chain.is_empty() {
            return Err(IdentityError::Pem { path: cert.to_owned(), reason: "no certificate".into() });
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        Ok(Self { chain, key: key_der })
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key, as rustls wants it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The leaf's public-key pin: base64 of the SHA-256 of its SubjectPublicKeyInfo, as
    /// `curl --pinnedpubkey sha256//PIN` and Chromium's
    /// `--ignore-certificate-errors-spki-list` take it.
    pub fn spki_sha256(&self) -> Result<String, IdentityError> {
        let leaf = &self.chain[0];
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| IdentityError::Pem { path: PathBuf::new(), reason: format!("unreadable certificate: {e}") })?;
        use sha2::Digest;
        Ok(base64(&sha2::Sha256::digest(cert.public_key().raw)))
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The subject common name of a DER certificate.
pub(crate) fn cert_common_name(der: &CertificateDer<'_>) -> Result<String, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::NoCommonName)?;
    let cn = cert.subject().iter_common_name().next().ok_or(IdentityError::NoCommonName)?;
    cn.as_str().map(str::to_owned).map_err(|_| IdentityError::NoCommonName)
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// PEM text for one DER object (LF line endings, as the usual tools write it).
fn pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> IdentityError {
    IdentityError::Pem { path: path.to_owned(), reason: e.to_string() }
}

fn create_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(|source| IdentityError::Io { path: dir.to_owned(), source })
}

fn read_file(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| IdentityError::Io { path: path.to_owned(), source })
}

/// Writes `text` to `path`; `secret` files are created owner-read/write only (unix).
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), IdentityError> {
    use std::io::Write;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    opts.open(path).and_then(|mut f| f.write_all(text.as_bytes())).map_err(|source| IdentityError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_node_round_trip_through_pem_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ClusterCa::generate().expect("ca");
        ca.save(dir.path()).expect("save ca");
        let loaded = ClusterCa::load(dir.path()).expect("load ca");
        assert_eq!(loaded.cert().der(), ca.cert().der());
        // The reloaded CA can still issue, and the result names the node.
        let node = loaded.issue("tm-7").expect("issue");
        node.save(&dir.path().join("tm-7")).expect("save node");
        let back = NodeIdentity::load(&dir.path().join("tm-7")).expect("load node");
        assert_eq!(back.name(), "tm-7");
        assert_eq!(back.chain(), node.chain());
        assert_eq!(cert_common_name(&back.chain()[0]).expect("cn"), "tm-7");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(CA_KEY_FILE)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_server_certificate_names_its_addresses_and_loads_back_from_pem() {
        let ca = ClusterCa::generate().expect("ca");
        let server = ca.issue_server(&["192.0.2.7".into(), "weir.example".into()]).expect("issue");
        let (_, cert) = x509_parser::parse_x509_certificate(&server.chain()[0]).expect("x509");
        let sans = cert
            .subject_alternative_name()
            .expect("san")
            .expect("a san extension")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        assert_eq!(sans, ["IPAddress(c0:00:02:07)", "DNSName(weir.example)"], "192.0.2.7 as an IP address, the name as DNS");
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert_path, key_path) = (dir.path().join("rest.pem"), dir.path().join("rest.key"));
        write_file(&cert_path, &pem("CERTIFICATE", &server.chain()[0]), false).expect("cert");
        write_file(&key_path, &pem("PRIVATE KEY", server.key().secret_der()), true).expect("key");
        let back = ServerIdentity::load(&cert_path, &key_path).expect("load");
        assert_eq!(back.chain(), server.chain());
        assert_eq!(back.spki_sha256().expect("pin"), server.spki_sha256().expect("pin"));
        // A key file in place of the certificate is named as such.
        let err = ServerIdentity::load(&key_path, &key_path).expect_err("no certificate");
        assert!(err.to_string().contains("rest.key"), "{err}");
    }

    #[test]
    fn base64_pads_as_the_standard_says() {
        for (raw, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let ca = ClusterCa::generate().expect("ca");
        for bad in ["", "a\nb", &"x".repeat(65)] {
            assert!(matches!(ca.issue(bad), Err(IdentityError::BadName(_))), "{bad:?}");
        }
    }
}
