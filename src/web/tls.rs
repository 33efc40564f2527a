//! The hub's TLS certificate: self-signed, made on first start, kept in `data_dir/tls`
//! (directory 0700, key 0600). Devices pin it by its SHA-256 (the mDNS `fp` record).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Datelike;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, ResultExt};

pub const TLS_DIR: &str = "tls";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

pub struct Paths {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn paths(data_dir: &Path) -> Paths {
    let dir = data_dir.join(TLS_DIR);
    Paths { cert: dir.join(CERT_FILE), key: dir.join(KEY_FILE), dir }
}

/// Makes the certificate and key if they are not there yet.
pub fn ensure(data_dir: &Path) -> Result<Paths> {
    let p = paths(data_dir);
    if p.cert.exists() && p.key.exists() {
        return Ok(p);
    }
    fs::create_dir_all(&p.dir).ctx(format!("creating {}", p.dir.display()))?;
    fs::set_permissions(&p.dir, fs::Permissions::from_mode(0o700)).ctx(format!("chmod {}", p.dir.display()))?;
    let mut names = vec!["localhost".to_string()];
    if let Some(h) = hostname() {
        names.push(format!("{h}.local"));
        names.push(h);
    }
    names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| Error::internal(format!("certificate: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "homehub");
    params.distinguished_name = dn;
    let today = chrono::Utc::now().date_naive();
    params.not_before = rcgen::date_time_ymd(today.year(), today.month() as u8, 1);
    params.not_after = rcgen::date_time_ymd(today.year() + 10, today.month() as u8, 1);
    let key = rcgen::KeyPair::generate().map_err(|e| Error::internal(format!("certificate key: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| Error::internal(format!("certificate: {e}")))?;
    write_private(&p.key, key.serialize_pem().as_bytes())?;
    write_private(&p.cert, cert.pem().as_bytes())?;
    tracing::info!(path = %p.cert.display(), "made a self-signed TLS certificate");
    Ok(p)
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it), mode 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .ctx(format!("creating {}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).ctx(format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(format!("renaming {}", tmp.display()))
}

fn hostname() -> Option<String> {
    let h = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then(|| h.to_string())
}

/// The DER bytes of the certificate in a PEM file.
pub fn cert_der(cert_pem: &Path) -> Result<Vec<u8>> {
    let pem = fs::read(cert_pem).ctx(format!("reading {}", cert_pem.display()))?;
    let mut rd = &pem[..];
    let der = rustls_pemfile::certs(&mut rd)
        .next()
        .ok_or_else(|| Error::invalid(format!("{}: no certificate in file", cert_pem.display())))?
        .map_err(|e| Error::invalid(format!("{}: {e}", cert_pem.display())))?;
    Ok(der.to_vec())
}

/// Hex SHA-256 of the certificate's DER: what devices pin.
pub fn fingerprint(cert_pem: &Path) -> Result<String> {
    Ok(hex::encode(Sha256::digest(cert_der(cert_pem)?)))
}

/// Seconds until the certificate expires (negative once it has), for `doctor`.
pub fn seconds_left(cert_pem: &Path) -> Result<i64> {
    let der = cert_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::invalid(format!("{}: not a valid certificate: {e}", cert_pem.display())))?;
    let not_after = cert.validity().not_after.timestamp();
    let not_before = cert.validity().not_before.timestamp();
    let now = chrono::Utc::now().timestamp();
    if now < not_before {
        return Err(Error::invalid(format!("{}: certificate is not valid yet", cert_pem.display())));
    }
    Ok(not_after - now)
}

pub fn server_config(p: &Paths) -> Result<Arc<rustls::ServerConfig>> {
    let cert = rustls::pki_types::CertificateDer::from(cert_der(&p.cert)?);
    let key_pem = fs::read(&p.key).ctx(format!("reading {}", p.key.display()))?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| Error::invalid(format!("{}: {e}", p.key.display())))?
        .ok_or_else(|| Error::invalid(format!("{}: no private key in file", p.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::invalid(format!("TLS certificate and key do not fit: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
