//! The bucket: an S3-compatible store or a local folder, through `object_store`.
//!
//! This is the only code in homehub that opens a connection beyond the LAN (see
//! ARCHITECTURE.md, "What may leave the house"). It talks to exactly one endpoint: the
//! configured one (or AWS's regional S3 endpoint when none is set). Credentials must be
//! given (config or the standard AWS environment variables): the client is never left
//! to go looking for them, so it never asks an instance-metadata address.
//!
//! What it sends is only what the relay hands it: object names `<prefix>/<hub id>/<32
//! hex>` and age ciphertext, with content type `application/octet-stream` and no
//! metadata headers.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::error::{Error, ErrorKind, Result};

/// Objects up to this size go up in one PUT; bigger ones in parts of this size.
pub const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
const PART_LEN: usize = 8 * 1024 * 1024;

/// Where the bucket is and how to sign in.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `s3://bucket/prefix` or `file:///path`.
    pub store: String,
    /// S3-compatible endpoint URL; empty = AWS.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Target {
    /// Fills empty credentials and region from the standard AWS environment variables.
    pub fn with_env(mut self) -> Target {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if self.access_key_id.is_empty()
            && let Some(v) = env("AWS_ACCESS_KEY_ID")
        {
            self.access_key_id = v;
        }
        if self.secret_access_key.is_empty()
            && let Some(v) = env("AWS_SECRET_ACCESS_KEY")
        {
            self.secret_access_key = v;
        }
        if self.region.is_empty() {
            self.region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
        }
        self
    }
}

/// An open bucket, with the prefix every name goes under.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// For messages: `s3://bucket/prefix` or the folder (no secrets).
    pub describe: String,
    /// S3 (objects may carry a content type) rather than a folder.
    s3: bool,
    /// The S3 client again, for presigned URLs (None for a folder).
    signer: Option<Arc<object_store::aws::AmazonS3>>,
}

impl Remote {
    pub fn open(t: &Target) -> Result<Remote> {
        let bad = |msg: String| Error::invalid(format!("cloud.store {:?}: {msg}", t.store));
        if let Some(rest) = t.store.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name".into()));
            }
            if t.access_key_id.is_empty() || t.secret_access_key.is_empty() {
                return Err(Error::invalid(
                    "cloud: no S3 credentials: set cloud.access_key_id and cloud.secret_access_key, \
                     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ));
            }
            // reqwest is built without a bundled TLS provider: use ring, as the rest of the hub.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut client = ClientOptions::new()
                .with_default_content_type("application/octet-stream")
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(60));
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(if t.region.is_empty() { "us-east-1" } else { &t.region })
                .with_access_key_id(&t.access_key_id)
                .with_secret_access_key(&t.secret_access_key)
                // The relay's queue retries with its own backoff; keep the client's short.
                .with_retry(RetryConfig { max_retries: 1, retry_timeout: Duration::from_secs(30), ..Default::default() });
            if !t.endpoint.is_empty() {
                if t.endpoint.starts_with("http://") {
                    client = client.with_allow_http(true);
                }
                b = b.with_endpoint(&t.endpoint).with_virtual_hosted_style_request(false);
            }
            let store = Arc::new(b.with_client_options(client).build().map_err(|e| bad(e.to_string()))?);
            Ok(Remote {
                store: store.clone(),
                prefix: prefix.trim_matches('/').to_string(),
                describe: t.store.clone(),
                s3: true,
                signer: Some(store),
            })
        } else if let Some(dir) = t.store.strip_prefix("file://") {
            if !dir.starts_with('/') || dir.len() < 2 {
                return Err(bad("file:// needs an absolute folder, e.g. file:///srv/homehub-cloud".into()));
            }
            create_private_dir(Path::new(dir)).map_err(|e| bad(format!("cannot create {dir}: {e}")))?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(e.to_string()))?;
            Ok(Remote { store: Arc::new(store), prefix: String::new(), describe: t.store.clone(), s3: false, signer: None })
        } else {
            Err(bad("must be s3://bucket/prefix or file:///path".into()))
        }
    }

    /// `<prefix>/<hub id>/<name>`.
    pub fn object(&self, hub_id: &str, name: &str) -> ObjPath {
        ObjPath::from(self.join(&format!("{hub_id}/{name}")))
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() { rest.to_string() } else { format!("{}/{rest}", self.prefix) }
    }

    /// Every object under the prefix, with its size.
    pub async fn list(&self) -> Result<Vec<(ObjPath, u64)>> {
        let base = (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()));
        let mut s = self.store.list(base.as_ref());
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| self.err("listing", e))?;
            out.push((m.location, m.size));
        }
        Ok(out)
    }

    /// The objects of one hub as the provider lists them — name (under the prefix), size,
    /// last modified (ms) — at most `max` (true when there were more).
    pub async fn list_hub(&self, hub_id: &str, max: usize) -> Result<(Vec<(String, u64, i64)>, bool)> {
        let base = ObjPath::from(self.join(hub_id));
        let mut s = self.store.list(Some(&base));
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            let m = m.map_err(|e| self.err("listing", e))?;
            if out.len() == max {
                return Ok((out, true));
            }
            out.push((m.location.to_string(), m.size, m.last_modified.timestamp_millis()));
        }
        Ok((out, false))
    }

    pub async fn delete(&self, at: &ObjPath) -> Result<()> {
        self.store.delete(at).await.map_err(|e| self.err("delete", e))
    }

    /// Puts a public page (`name` under the prefix, beside the hubs' folders) as
    /// `text/html`, so a browser opens it from the bucket; answers its key. The one
    /// object that is not ciphertext: the same file for every hub, with no data in it.
    pub async fn put_page(&self, name: &str, body: &'static [u8]) -> Result<String> {
        use object_store::{Attribute, Attributes, PutOptions};
        let key = self.join(name);
        let mut opts = PutOptions::default();
        if self.s3 {
            opts.attributes = Attributes::from_iter([(Attribute::ContentType, "text/html; charset=utf-8")]);
        }
        self.store
            .put_opts(&ObjPath::from(key.as_str()), PutPayload::from_static(body), opts)
            .await
            .map_err(|e| self.err("upload", e))?;
        Ok(key)
    }

    /// A URL that reads `key` without credentials until `expires` (at most 7 days, S3's
    /// limit); None for a folder.
    pub async fn presigned_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        use object_store::signer::{Method, Signer};
        let Some(s) = &self.signer else { return Ok(None) };
        let url = s.signed_url(Method::GET, &ObjPath::from(key), expires).await.map_err(|e| self.err("signing a link", e))?;
        Ok(Some(url.to_string()))
    }

    pub async fn put_bytes(&self, at: &ObjPath, body: Vec<u8>) -> Result<()> {
        self.store.put(at, PutPayload::from(Bytes::from(body))).await.map_err(|e| self.err("upload", e))?;
        Ok(())
    }

    /// Uploads a file: one PUT up to [`SINGLE_PUT_MAX`], parts beyond (never the whole
    /// file in memory). `sent` is told the bytes as they go (for the bandwidth cap).
    pub async fn put_file(&self, at: &ObjPath, file: &Path, mut sent: impl AsyncFnMut(u64)) -> Result<()> {
        let io = |e: std::io::Error| Error::internal(format!("reading {}: {e}", file.display()));
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        let len = f.metadata().await.map_err(io)?.len();
        if len <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf).await.map_err(io)?;
            let n = buf.len() as u64;
            self.put_bytes(at, buf).await?;
            sent(n).await;
            return Ok(());
        }
        let upload = self.store.put_multipart(at).await.map_err(|e| self.err("starting a multipart upload", e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_LEN);
        let mut buf = vec![0u8; PART_LEN];
        loop {
            let n = read_full(&mut f, &mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            if let Err(e) = w.wait_for_capacity(2).await {
                w.abort().await.ok();
                return Err(self.err("upload", e));
            }
            w.write(&buf[..n]);
            sent(n as u64).await;
        }
        w.finish().await.map_err(|e| self.err("finishing a multipart upload", e))?;
        Ok(())
    }

    pub async fn get_range(&self, at: &ObjPath, range: Range<u64>) -> Result<Bytes> {
        self.store.get_range(at, range).await.map_err(|e| self.err("download", e))
    }

    /// Streams an object into `file`.
    pub async fn get_to_file(&self, at: &ObjPath, file: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let r = self.store.get(at).await.map_err(|e| self.err("download", e))?;
        let io = |e: std::io::Error| Error::internal(format!("writing {}: {e}", file.display()));
        let mut out = tokio::fs::File::create(file).await.map_err(io)?;
        let mut s = r.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| self.err("download", e))?;
            out.write_all(&chunk).await.map_err(io)?;
            n += chunk.len() as u64;
        }
        out.sync_all().await.map_err(io)?;
        Ok(n)
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        let kind = match e {
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Unavailable,
        };
        Error::new(kind, format!("cloud {}: {what}: {e}", self.describe))
    }
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}
