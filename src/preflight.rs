//! The start-up preflight shared by `edgelb run`, `edgelb check` and every reload: the files a
//! validated config points at (cluster key, admin and read tokens) exist, are regular files,
//! are not empty, are owned by the user edgelb runs as (or root) and are not accessible by group
//! or others; `[acme] ca_file` exists and holds a PEM certificate. `check` (the unit's `ExecStartPre`) accepting a config therefore means `run` starts.
//!
//! Must not: re-implement what another module owns. The cluster key goes through
//! `cluster::setup::read_key_file` (its own parser and mode rule); this module adds the owner rule
//! every secret file shares.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::config::Config;

/// The effective user id of this process: `/proc/self` is owned by it (Linux). `None` when
/// `/proc` is not mounted, in which case the owner rule is skipped (the mode rule still holds).
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Checks owner and mode of a secret file without reading it. `key` names the config key for
/// the message (`stats.admin_token_file`).
pub fn secret_file_rules(path: &Path, key: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{key}: {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{key}: {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{key}: {shown} has mode {mode:04o}: it must not be accessible by group or others \
             (chmod 600 {shown})"
        ));
    }
    if let Some(me) = effective_uid() {
        let owner = meta.uid();
        if owner != me && owner != 0 {
            return Err(format!(
                "{key}: {shown} is owned by uid {owner}: it must be owned by the user edgelb runs \
                 as (uid {me}) or root (chown it)"
            ));
        }
    }
    Ok(())
}

/// Reads a token file under the secret-file rules: the trimmed, non-empty content.
pub fn read_token_file(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    secret_file_rules(path, key)?;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{key}: {}: {e}", path.display()))?;
    let t = text.trim();
    if t.is_empty() {
        // An empty token would let an empty password in.
        return Err(format!("{key}: {} is empty", path.display()));
    }
    Ok(t.as_bytes().to_vec())
}

/// Every problem `run` would refuse to start with (or a reload would be rejected with), beyond
/// what config validation already reported, each with the config key it comes from. Empty =
/// good to go.
pub fn check(cfg: &Config) -> Vec<(Vec<&'static str>, String)> {
    let mut out = Vec::new();
    if let Some(cl) = &cfg.cluster {
        let path = Path::new(&cl.auth_key_file);
        let at = vec!["cluster", "auth_key_file"];
        // The cluster's own loader (format, key ids, mode), then the owner rule.
        if let Err(e) = crate::cluster::setup::read_key_file(path) {
            out.push((at, e));
        } else if let Err(e) = secret_file_rules(path, "cluster.auth_key_file") {
            out.push((at, e));
        }
    }
    if let Some(st) = &cfg.stats {
        for (key, file) in [
            ("admin_token_file", &st.admin_token_file),
            ("read_token_file", &st.read_token_file),
        ] {
            if let Some(f) = file {
                if let Err(e) = read_token_file(Path::new(f), &format!("stats.{key}")) {
                    out.push((vec!["stats", key], e));
                }
            }
        }
    }
    // The ACME client trusts exactly this CA for the ACME server: a missing or empty file would
    // only show at the first order, maybe weeks later.
    if let Some(f) = cfg.acme.as_ref().and_then(|a| a.ca_file.as_ref()) {
        let at = vec!["acme", "ca_file"];
        match std::fs::read(f) {
            Ok(b) if b.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {}
            Ok(_) => out.push((
                at,
                format!("acme.ca_file: {f}: no PEM certificate in the file"),
            )),
            Err(e) => out.push((at, format!("acme.ca_file: {f}: {e}"))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t");
        assert!(read_token_file(&p, "k").unwrap_err().contains("k: "));
        std::fs::write(&p, " tok \n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(read_token_file(&p, "k").unwrap_err().contains("mode 0640"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token_file(&p, "k").as_deref(), Ok(&b"tok"[..]));
        std::fs::write(&p, "\n").expect("write");
        assert!(read_token_file(&p, "k").unwrap_err().contains("empty"));
        assert!(read_token_file(dir.path(), "k")
            .unwrap_err()
            .contains("not a regular file"));
    }
}
