//! Test PKI and TLS clients: a CA and leaf certificates generated at test time (rcgen), files
//! written with the modes edgelb's preflight wants, and a rustls client that reports which
//! certificate the server chose.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "edgelb test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    /// A leaf for `names` with `serial`, signed by this CA (ECDSA P-256).
    pub fn issue(&self, names: &[&str], serial: u64) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        self.issue_with(names, serial, key)
    }

    pub fn issue_with(&self, names: &[&str], serial: u64, key: rcgen::KeyPair) -> Leaf {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("x"),
        );
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

/// Writes `NAME.pem` and `NAME.key` (mode 0600) into `dir`, atomically (temp file + rename,
/// as an ACME client or a careful operator does). Returns (cert, key) paths.
pub fn write_leaf(dir: &Path, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    write_atomic(&key, leaf.key_pem.as_bytes(), 0o600);
    write_atomic(&cert, leaf.cert_pem.as_bytes(), 0o644);
    (cert, key)
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A client config trusting `ca` and offering `alpn`.
pub fn client_config(ca: &Ca, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from(ca.cert.der().to_vec());
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(c)
}

/// A client that accepts any certificate (to see what is served without SNI or for an
/// unknown name) and records nothing else.
pub fn any_cert_config(alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    any_cert_config_recording(alpn).0
}

/// `any_cert_config`, also returning where the stapled OCSP response of the last handshake is
/// recorded.
pub fn any_cert_config_recording(
    alpn: &[&str],
) -> (Arc<rustls::ClientConfig>, Arc<std::sync::Mutex<Vec<u8>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ocsp = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider, ocsp.clone())))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    (Arc::new(c), ocsp)
}

#[derive(Debug)]
struct AcceptAny(
    Arc<rustls::crypto::CryptoProvider>,
    Arc<std::sync::Mutex<Vec<u8>>>,
);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.1.lock().unwrap() = ocsp.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects with SNI `sni` (an IP address sends none).
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// The leaf certificate the server sent.
pub fn served(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Reads one response with a Content-Length body: (head, body).
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((head, buf[end + 4..end + 4 + len].to_vec()));
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One GET over `s`: (head, body).
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    path: &str,
    extra: &str,
) -> Option<(String, Vec<u8>)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: www.example.com\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    read_response(s).await
}

/// The value of header `name` in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
