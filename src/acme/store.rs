//! Files of the ACME client: the account (key + URL) in `storage`, and the certificate in
//! `cert_dir` as one PEM file, the chain (leaf first) followed by its private key: HAProxy's
//! combined `crt` form, which the TLS listeners' `cert_dir` loads (`crate::tls::certs`: the key
//! "in the same file"). Each file is written atomically (temporary dot-file in the same
//! directory, fsync, rename, fsync of the directory), so a reader — the TLS listener polling for
//! changes — only ever sees the whole old certificate with its key or the whole new one: a
//! chain and a key in two files could not change together. Mode 0600 (it holds a key), as is
//! the account.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::AccountCredentials;

/// What we know of a certificate on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    #[serde(with = "unix_ms")]
    pub not_before: SystemTime,
    #[serde(with = "unix_ms")]
    pub not_after: SystemTime,
    /// DNS names of the subject alternative name extension, lowercased, sorted.
    pub names: Vec<String>,
    pub serial: String,
}

mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        s.serialize_u64(ms)
    }
}

/// Where one certificate lives: `<cert_dir>/<cert_name>.pem`, chain then key.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub pem: PathBuf,
}

impl CertPaths {
    pub fn new(cert_dir: &Path, name: &str) -> Self {
        CertPaths {
            pem: cert_dir.join(format!("{name}.pem")),
        }
    }
}

fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Reads the validity and names of the first certificate in a PEM chain.
pub fn parse_chain(pem: &[u8]) -> Result<CertInfo, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let v = cert.validity();
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    names.sort();
    Ok(CertInfo {
        not_before: from_unix(v.not_before.timestamp()),
        not_after: from_unix(v.not_after.timestamp()),
        names,
        serial: cert
            .tbs_certificate
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// The certificate at `paths`, if the file is there, its chain parses and it holds a key.
pub fn load_cert(paths: &CertPaths) -> Result<Option<CertInfo>, String> {
    let pem = match std::fs::read(&paths.pem) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", paths.pem.display())),
    };
    if !pem.windows(12).any(|w| w == b"PRIVATE KEY-") {
        return Err(format!(
            "{}: no private key in the file",
            paths.pem.display()
        ));
    }
    parse_chain(&pem)
        .map(Some)
        .map_err(|e| format!("{}: {e}", paths.pem.display()))
}

/// Creates `dir` (and parents) with `mode` if missing.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Writes `bytes` to `path` atomically with `mode`: a temporary file beside it, fsync, rename
/// over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is masked by the umask; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Writes a new certificate: chain then key in one file, 0600, by one rename.
pub fn save_cert(paths: &CertPaths, chain_pem: &str, key_pem: &str) -> Result<(), String> {
    if let Some(dir) = paths.pem.parent() {
        ensure_dir(dir, 0o700)?;
    }
    let mut pem = String::with_capacity(chain_pem.len() + key_pem.len() + 1);
    pem.push_str(chain_pem);
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(key_pem);
    write_atomic(&paths.pem, pem.as_bytes(), 0o600)
}

/// `account.json` in `storage`: the directory URL it belongs to and instant-acme's credentials
/// (the account's private key, PKCS#8, and its URL).
#[derive(serde::Serialize, serde::Deserialize)]
struct AccountFile {
    directory: String,
    credentials: AccountCredentials,
}

pub fn account_path(storage: &Path) -> PathBuf {
    storage.join("account.json")
}

/// The stored account for `directory`; `None` if there is none, or it belongs to another CA.
pub fn load_account(storage: &Path, directory: &str) -> Result<Option<AccountCredentials>, String> {
    let path = account_path(storage);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let f: AccountFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not an account file: {e}", path.display()))?;
    Ok((f.directory == directory).then_some(f.credentials))
}

/// Stores the account (0600); an account of another CA is kept as `account.json.<unix time>`.
pub fn save_account(
    storage: &Path,
    directory: &str,
    credentials: AccountCredentials,
) -> Result<(), String> {
    ensure_dir(storage, 0o700)?;
    let path = account_path(storage);
    if path.exists() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let old = storage.join(format!("account.json.{now}"));
        std::fs::rename(&path, &old).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let bytes = serde_json::to_vec_pretty(&AccountFile {
        directory: directory.to_string(),
        credentials,
    })
    .map_err(|e| format!("account: {e}"))?;
    write_atomic(&path, &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_the_exact_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.key");
        write_atomic(&p, b"one", 0o600).expect("writes");
        write_atomic(&p, b"two", 0o600).expect("overwrites");
        assert_eq!(std::fs::read(&p).expect("reads"), b"two");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_chain_that_is_not_pem_is_an_error_and_missing_files_are_none() {
        assert!(parse_chain(b"garbage").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = CertPaths::new(dir.path(), "example.com");
        assert_eq!(load_cert(&paths), Ok(None));
    }
}
