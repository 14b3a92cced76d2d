//! Certificate files to a `CertSet`: PEM chains and keys read, checked (parsable, key matches
//! the certificate, key file owner and mode), indexed by the names in each certificate.
//!
//! Loading is all or nothing: a set with one bad file is refused whole, with every problem
//! named by file and reason, so a reload keeps serving the previous set and start-up refuses to
//! begin. Expired certificates are loaded (HAProxy does too; one stale name must not take every
//! other site down) and reported as warnings.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::x509::{self, CertInfo};
use crate::config::TlsSettings;

/// A problem with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.reason)
    }
}

fn problem(file: &Path, reason: impl Into<String>) -> Problem {
    Problem {
        file: file.display().to_string(),
        reason: reason.into(),
    }
}

/// One certificate chain ready to serve.
#[derive(Debug)]
pub struct Loaded {
    pub file: PathBuf,
    pub info: CertInfo,
    pub key: Arc<CertifiedKey>,
}

/// Every certificate of a TLS listen, indexed for SNI.
#[derive(Debug)]
pub struct CertSet {
    pub certs: Vec<Loaded>,
    default: usize,
    /// Lowercased exact name -> indices into `certs` (several when RSA and ECDSA chains share a
    /// name; the client's signature schemes choose).
    exact: HashMap<String, Vec<usize>>,
    /// `*.example.com` stored as `example.com`: matches exactly one more label.
    wildcard: HashMap<String, Vec<usize>>,
    /// Expired or not-yet-valid certificates (served anyway).
    pub warnings: Vec<Problem>,
    /// The files this set was read from, to notice when they change.
    pub fingerprint: Fingerprint,
}

impl CertSet {
    /// The chain for SNI `name` (exact, then wildcard), else the default unless `strict`.
    pub fn select(
        &self,
        name: Option<&str>,
        schemes: &[SignatureScheme],
        strict: bool,
    ) -> Option<&Arc<CertifiedKey>> {
        let found = name.and_then(|n| {
            let lower;
            let n = if n.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = n.to_ascii_lowercase();
                lower.as_str()
            } else {
                n
            };
            let n = n.strip_suffix('.').unwrap_or(n);
            self.exact.get(n).or_else(|| {
                let (_, parent) = n.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        let idx = match found {
            Some(list) => self.pick(list, schemes),
            None if strict => return None,
            None => self.default,
        };
        self.certs.get(idx).map(|c| &c.key)
    }

    fn pick(&self, list: &[usize], schemes: &[SignatureScheme]) -> usize {
        if list.len() > 1 {
            for &i in list {
                if self.certs[i].key.key.choose_scheme(schemes).is_some() {
                    return i;
                }
            }
        }
        list[0]
    }

    /// The default certificate (no SNI, or no match).
    pub fn default_cert(&self) -> &Loaded {
        &self.certs[self.default]
    }
}

/// What a file looked like: (path, size, mtime, inode); `None` when it could not be read.
pub type FileStamp = (PathBuf, Option<(u64, SystemTime, u64)>);

/// The state of every file a set comes from, including which files a `cert_dir` holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(pub Vec<FileStamp>);

fn stamp(p: &Path) -> FileStamp {
    let meta = std::fs::metadata(p).ok().map(|m| {
        (
            m.len(),
            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            m.ino(),
        )
    });
    (p.to_path_buf(), meta)
}

/// One certificate to read: its PEM file, where its key is, its optional OCSP response.
#[derive(Debug, Clone)]
struct Source {
    cert: PathBuf,
    /// `None`: the key is in the cert file (or, in a directory, next to it).
    key: Option<PathBuf>,
    ocsp: Option<PathBuf>,
}

/// Files of `cert_dir` that are not certificates (HAProxy's extra-file extensions).
const SIDE_EXTENSIONS: &[&str] = &["key", "ocsp", "issuer", "sctl"];

/// The certificate files of a directory, in name order, with the key and OCSP files found
/// beside each (`NAME.pem.key` or `NAME.key`; `NAME.pem.ocsp` or `NAME.ocsp`).
fn dir_sources(dir: &Path) -> Result<Vec<Source>, Problem> {
    let rd = std::fs::read_dir(dir).map_err(|e| problem(dir, format!("cannot read: {e}")))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            !name.starts_with('.')
                && !name.ends_with('~')
                && !name.ends_with(".tmp")
                && !SIDE_EXTENSIONS.contains(&ext)
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|cert| {
            let side = |ext: &str| {
                let appended = PathBuf::from(format!("{}.{ext}", cert.display()));
                let replaced = cert.with_extension(ext);
                [appended, replaced].into_iter().find(|p| p.is_file())
            };
            Source {
                key: side("key"),
                ocsp: side("ocsp"),
                cert,
            }
        })
        .collect())
}

fn sources(t: &TlsSettings) -> (Vec<Source>, Vec<Problem>) {
    let mut out: Vec<Source> = t
        .certs
        .iter()
        .map(|c| Source {
            cert: PathBuf::from(&c.cert),
            key: c.key.as_ref().map(PathBuf::from),
            ocsp: c.ocsp.as_ref().map(PathBuf::from),
        })
        .collect();
    let mut problems = Vec::new();
    if let Some(dir) = &t.cert_dir {
        match dir_sources(Path::new(dir)) {
            // Before ACME's first issuance: an empty set, reported as a warning by `load`.
            Ok(s) if s.is_empty() && t.acme_managed => {}
            Err(_) if t.acme_managed && !Path::new(dir).exists() => {}
            Ok(s) if s.is_empty() && t.certs.is_empty() => {
                problems.push(problem(Path::new(dir), "holds no certificate file"))
            }
            Ok(s) => out.extend(s),
            Err(p) => problems.push(p),
        }
    }
    (out, problems)
}

/// The fingerprint of everything `t` reads, without reading contents.
pub fn fingerprint(t: &TlsSettings) -> Fingerprint {
    let (srcs, _) = sources(t);
    let mut v = Vec::with_capacity(srcs.len() * 2 + 1);
    if let Some(d) = &t.cert_dir {
        v.push(stamp(Path::new(d)));
    }
    for s in &srcs {
        v.push(stamp(&s.cert));
        for p in s.key.iter().chain(s.ocsp.iter()) {
            v.push(stamp(p));
        }
    }
    Fingerprint(v)
}

fn read_file(p: &Path) -> Result<Vec<u8>, Problem> {
    std::fs::read(p).map_err(|e| problem(p, format!("cannot read: {e}")))
}

fn load_one(src: &Source, provider: &CryptoProvider) -> Result<Loaded, Vec<Problem>> {
    let pem = read_file(&src.cert).map_err(|p| vec![p])?;
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem) {
        match item {
            Ok(c) => chain.push(c),
            Err(e) => return Err(vec![problem(&src.cert, format!("bad PEM: {e}"))]),
        }
    }
    if chain.is_empty() {
        return Err(vec![problem(&src.cert, "no CERTIFICATE in the file")]);
    }
    let info = x509::parse(&chain[0]).ok_or_else(|| {
        vec![problem(
            &src.cert,
            "the first certificate is not valid X.509 DER",
        )]
    })?;
    if info.names().is_empty() {
        return Err(vec![problem(
            &src.cert,
            "the certificate names no host (no subjectAltName DNS name, no CN)",
        )]);
    }
    // The key: the named file, else the cert file itself.
    let in_cert = PrivateKeyDer::from_pem_slice(&pem).ok();
    let (key_file, key_der) = match (&src.key, in_cert) {
        (Some(k), _) => {
            let bytes = read_file(k).map_err(|p| vec![p])?;
            let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
                vec![problem(
                    k,
                    format!("no usable PRIVATE KEY in the file ({e})"),
                )]
            })?;
            (k.clone(), der)
        }
        (None, Some(der)) => (src.cert.clone(), der),
        (None, None) => {
            return Err(vec![problem(
                &src.cert,
                "no private key: none in the file and no key file given (or beside it)",
            )])
        }
    };
    // The same owner and mode rule as every other secret file.
    if let Err(msg) = crate::preflight::secret_file_rules(&key_file, "key") {
        let prefix = format!("key: {}", key_file.display());
        let reason = msg.strip_prefix(&prefix).unwrap_or(&msg);
        let reason = reason.trim_start_matches(':').trim();
        return Err(vec![problem(
            &key_file,
            format!("private key file {reason}"),
        )]);
    }
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| vec![problem(&key_file, format!("unusable private key: {e}"))])?;
    let mut ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(vec![problem(
                &key_file,
                format!("the key does not belong to {} ({e})", src.cert.display()),
            )])
        }
    }
    if let Some(o) = &src.ocsp {
        let der = read_file(o).map_err(|p| vec![p])?;
        // An OCSPResponse is a DER SEQUENCE; anything else would be stapled as garbage.
        if der.first() != Some(&0x30) || der.len() < 8 {
            return Err(vec![problem(o, "not a DER OCSP response")]);
        }
        ck.ocsp = Some(der);
    }
    Ok(Loaded {
        file: src.cert.clone(),
        info,
        key: Arc::new(ck),
    })
}

/// Reads and checks every certificate `t` names. All or nothing.
pub fn load(t: &TlsSettings, provider: &CryptoProvider) -> Result<CertSet, Vec<Problem>> {
    let fingerprint = fingerprint(t);
    let (srcs, mut problems) = sources(t);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut certs = Vec::new();
    let mut warnings = Vec::new();
    for s in &srcs {
        match load_one(s, provider) {
            Ok(l) => {
                if l.info.not_after < now {
                    warnings.push(problem(&l.file, "the certificate has expired"));
                } else if l.info.not_before > now {
                    warnings.push(problem(&l.file, "the certificate is not valid yet"));
                }
                certs.push(l)
            }
            Err(p) => problems.extend(p),
        }
    }
    let default = match &t.default_cert {
        Some(d) => match certs.iter().position(|c| c.file == Path::new(d)) {
            Some(i) => i,
            None => {
                problems.push(problem(
                    Path::new(d),
                    "default_cert is not one of the loaded certificates",
                ));
                0
            }
        },
        None => 0,
    };
    if certs.is_empty() && problems.is_empty() && t.acme_managed {
        // Handshakes fail (no certificate) until ACME writes the first one; the directory is
        // watched, so it is served from then on without a reload.
        warnings.push(Problem {
            file: t.cert_dir.clone().unwrap_or_default(),
            reason: "no certificate yet: waiting for ACME's first issuance (TLS handshakes \
                     fail until then)"
                .into(),
        });
    } else if certs.is_empty() && problems.is_empty() {
        problems.push(Problem {
            file: "tls".into(),
            reason: "no certificate".into(),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
    let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in certs.iter().enumerate() {
        for n in c.info.names() {
            match n.strip_prefix("*.") {
                Some(parent) => wildcard.entry(parent.to_string()).or_default().push(i),
                None => exact.entry(n).or_default().push(i),
            }
        }
    }
    Ok(CertSet {
        certs,
        default,
        exact,
        wildcard,
        warnings,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, acme_managed: bool) -> TlsSettings {
        TlsSettings {
            bind: vec!["127.0.0.1:0".into()],
            cert_dir: Some(dir.display().to_string()),
            acme_managed,
            ..TlsSettings::default()
        }
    }

    #[test]
    fn an_empty_acme_directory_is_a_warning_any_other_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("certs");
        let p = crate::tls::provider();
        for dir in [tmp.path(), missing.as_path()] {
            let set = load(&settings(dir, true), &p).expect("empty ACME directory loads");
            assert!(set.certs.is_empty());
            assert!(set.select(Some("example.com"), &[], false).is_none());
            assert!(
                set.warnings[0].reason.contains("waiting for ACME"),
                "{:?}",
                set.warnings
            );
            let err = load(&settings(dir, false), &p).expect_err("empty cert_dir refused");
            assert!(!err.is_empty());
        }
    }
}
