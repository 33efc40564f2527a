//! The hub's configuration: the TOML file of SPEC.md, parsed and checked.
//!
//! Owns: the config types, their defaults, and validation. Every key is optional; an
//! unknown key, a wrong type or an impossible value is an error whose one line names
//! the key. May not touch: anything but the file it is asked to read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/homehub/homehub.toml";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub web: Web,
    pub mqtt: Mqtt,
    pub mdns: Mdns,
    pub recording: Recording,
    pub motion: Motion,
    pub decode: Decode,
    pub cloud: Cloud,
    pub camera: Vec<Camera>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    pub listen: String,
    pub allow_public_clients: bool,
    /// A browser session unused this long ends.
    pub session_idle_hours: u32,
    /// A browser session ends this long after sign-in, used or not.
    pub session_max_days: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    pub listen_tls: String,
    pub listen_plain: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mdns {
    pub enabled: bool,
    pub interfaces: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RecordingMode {
    Events,
    Continuous,
    Off,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Recording {
    pub mode: RecordingMode,
    pub segment_seconds: u32,
    pub retain_days: u32,
    /// Gigabytes (10^9 bytes); fractions allowed. 0 = keep `min_free_percent` free instead.
    pub max_disk_gb: f64,
    pub min_free_percent: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Motion {
    pub fps: u32,
    pub pre_roll_seconds: u32,
    pub post_roll_seconds: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Decode {
    pub prefer: Vec<String>,
}

/// `Debug` hides the S3 keys (configs are logged and printed in errors).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cloud {
    pub store: String,
    pub endpoint: String,
    pub region: String,
    pub recipients: Vec<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Upload bandwidth cap in kilobits per second; 0 = no cap.
    pub max_upload_kbps: u64,
}

/// `Debug` hides the password in the URLs.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub substream_url: String,
}

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "<redacted>";

/// A secret for `Debug`: empty stays visibly empty, anything else is hidden.
fn secret(s: &str) -> &str {
    if s.is_empty() { "" } else { REDACTED }
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("store", &self.store)
            .field("endpoint", &mask_password(&self.endpoint, REDACTED))
            .field("region", &self.region)
            .field("recipients", &self.recipients)
            .field("access_key_id", &secret(&self.access_key_id))
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("max_upload_kbps", &self.max_upload_kbps)
            .finish()
    }
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("name", &self.name)
            .field("url", &mask_password(&self.url, REDACTED))
            .field("substream_url", &mask_password(&self.substream_url, REDACTED))
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/homehub"),
            web: Web::default(),
            mqtt: Mqtt::default(),
            mdns: Mdns::default(),
            recording: Recording::default(),
            motion: Motion::default(),
            decode: Decode::default(),
            cloud: Cloud::default(),
            camera: Vec::new(),
        }
    }
}

impl Default for Web {
    fn default() -> Self {
        Web { listen: "0.0.0.0:8443".into(), allow_public_clients: false, session_idle_hours: 168, session_max_days: 30 }
    }
}

impl Default for Mqtt {
    fn default() -> Self {
        Mqtt { listen_tls: "0.0.0.0:8883".into(), listen_plain: "127.0.0.1:1883".into() }
    }
}

impl Default for Mdns {
    fn default() -> Self {
        Mdns { enabled: true, interfaces: Vec::new() }
    }
}

impl Default for Recording {
    fn default() -> Self {
        Recording { mode: RecordingMode::Events, segment_seconds: 60, retain_days: 14, max_disk_gb: 0.0, min_free_percent: 10.0 }
    }
}

impl Default for Motion {
    fn default() -> Self {
        Motion { fps: 5, pre_roll_seconds: 5, post_roll_seconds: 10 }
    }
}

pub const DEFAULT_DECODERS: &[&str] =
    &["v4l2h264dec", "v4l2slh264dec", "vah264dec", "vaapih264dec", "nvh264dec", "avdec_h264", "openh264dec"];

impl Default for Decode {
    fn default() -> Self {
        Decode { prefer: DEFAULT_DECODERS.iter().map(|s| s.to_string()).collect() }
    }
}

impl Default for Cloud {
    fn default() -> Self {
        Cloud {
            store: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            recipients: Vec::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            max_upload_kbps: 0,
        }
    }
}

impl Config {
    /// The path `serve` and the admin commands read when none is given.
    pub fn default_path() -> PathBuf {
        std::env::var_os("HOMEHUB_CONFIG").map(PathBuf::from).unwrap_or_else(|| DEFAULT_PATH.into())
    }

    /// Reads and checks the file. Errors are one line: `FILE: key `a.b`: what is wrong`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::invalid(format!("config {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| e.context(format!("config {}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            // toml's own Display is a multi-line snippet; keep one line.
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            Error::invalid(match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            })
        })?;
        let cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            // Keep the first line: the deserializer appends "in `key`" on its own line.
            let inner = e.into_inner().to_string().lines().next().unwrap_or_default().to_string();
            // serde's message for an unknown field lists every valid one; the path
            // alone names the key.
            if inner.starts_with("unknown field `") {
                Error::invalid(format!("unknown key `{path}`"))
            } else {
                Error::invalid(format!("key `{path}`: {inner}"))
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        fn bad(key: &str, why: impl std::fmt::Display) -> Error {
            Error::invalid(format!("key `{key}`: {why}"))
        }
        if self.data_dir.as_os_str().is_empty() || !self.data_dir.is_absolute() {
            return Err(bad("data_dir", format!("must be an absolute path, got {:?}", self.data_dir)));
        }
        parse_addr("web.listen", &self.web.listen)?;
        if !(1..=8760).contains(&self.web.session_idle_hours) {
            return Err(bad("web.session_idle_hours", format!("must be 1..=8760, got {}", self.web.session_idle_hours)));
        }
        if !(1..=365).contains(&self.web.session_max_days) {
            return Err(bad("web.session_max_days", format!("must be 1..=365, got {}", self.web.session_max_days)));
        }
        parse_addr("mqtt.listen_tls", &self.mqtt.listen_tls)?;
        parse_addr("mqtt.listen_plain", &self.mqtt.listen_plain)?;
        for (i, name) in self.mdns.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(bad(&format!("mdns.interfaces[{i}]"), format!("not an interface name: {name:?}")));
            }
        }
        let r = &self.recording;
        if !(1..=3600).contains(&r.segment_seconds) {
            return Err(bad("recording.segment_seconds", format!("must be 1..=3600, got {}", r.segment_seconds)));
        }
        if r.retain_days > 3650 {
            return Err(bad("recording.retain_days", format!("must be 0..=3650, got {}", r.retain_days)));
        }
        if !r.max_disk_gb.is_finite() || r.max_disk_gb < 0.0 {
            return Err(bad("recording.max_disk_gb", format!("must be 0 or more, got {}", r.max_disk_gb)));
        }
        if !(0.0..=95.0).contains(&r.min_free_percent) {
            return Err(bad("recording.min_free_percent", format!("must be 0..=95, got {}", r.min_free_percent)));
        }
        let m = &self.motion;
        if m.fps > 30 {
            return Err(bad("motion.fps", format!("must be 0..=30 (0 = no motion detection), got {}", m.fps)));
        }
        if m.pre_roll_seconds > 60 {
            return Err(bad("motion.pre_roll_seconds", format!("must be 0..=60, got {}", m.pre_roll_seconds)));
        }
        if m.post_roll_seconds > 600 {
            return Err(bad("motion.post_roll_seconds", format!("must be 0..=600, got {}", m.post_roll_seconds)));
        }
        if self.decode.prefer.is_empty() {
            return Err(bad("decode.prefer", "must name at least one decoder element"));
        }
        if let Some(name) = self
            .decode
            .prefer
            .iter()
            .find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(bad("decode.prefer", format!("not a GStreamer element name: {name:?}")));
        }
        let c = &self.cloud;
        if !(c.store.is_empty() || c.store.starts_with("s3://") || c.store.starts_with("file:///")) {
            return Err(bad(
                "cloud.store",
                format!("must be \"\", \"s3://bucket/prefix\" or \"file:///path\", got {:?}", c.store),
            ));
        }
        if !(c.endpoint.is_empty() || c.endpoint.starts_with("https://") || c.endpoint.starts_with("http://")) {
            return Err(bad("cloud.endpoint", format!("must be an http(s) URL, got {:?}", c.endpoint)));
        }
        if let Some((i, r)) = c.recipients.iter().enumerate().find(|(_, r)| !r.starts_with("age1")) {
            return Err(bad(&format!("cloud.recipients[{i}]"), format!("not an age recipient (age1…): {r:?}")));
        }
        if let Some(rest) = c.store.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or("");
            if bucket.is_empty()
                || !bucket.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.')
            {
                return Err(bad(
                    "cloud.store",
                    format!("s3://BUCKET/PREFIX needs a bucket name (lowercase letters, digits, '-', '.'), got {:?}", c.store),
                ));
            }
        }
        if c.store == "file:///" {
            return Err(bad("cloud.store", "file:/// needs a folder, e.g. file:///srv/homehub-cloud"));
        }
        if let Err(e) = crate::cloud::keys::parse_recipients(&c.recipients) {
            return Err(bad("cloud.recipients", e.to_string()));
        }
        if !c.store.is_empty() && c.recipients.is_empty() {
            return Err(bad("cloud.recipients", "cloud.store is set, so at least one recipient is needed"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, cam) in self.camera.iter().enumerate() {
            let key = format!("camera[{i}]");
            if cam.name.trim().is_empty() || cam.name.len() > 100 {
                return Err(bad(&format!("{key}.name"), "must be 1 to 100 characters"));
            }
            if !names.insert(cam.name.as_str()) {
                return Err(bad(&format!("{key}.name"), format!("{:?} is used by two cameras", cam.name)));
            }
            check_rtsp_url(&format!("{key}.url"), &cam.url, false)?;
            check_rtsp_url(&format!("{key}.substream_url"), &cam.substream_url, true)?;
        }
        Ok(())
    }

    pub fn web_listen(&self) -> SocketAddr {
        self.web.listen.parse().expect("validated")
    }
    pub fn mqtt_listen_tls(&self) -> SocketAddr {
        self.mqtt.listen_tls.parse().expect("validated")
    }
    pub fn mqtt_listen_plain(&self) -> SocketAddr {
        self.mqtt.listen_plain.parse().expect("validated")
    }
}

fn parse_addr(key: &str, v: &str) -> Result<SocketAddr> {
    v.parse().map_err(|_| Error::invalid(format!("key `{key}`: expected ADDRESS:PORT, got {v:?}")))
}

fn check_rtsp_url(key: &str, url: &str, may_be_empty: bool) -> Result<()> {
    if url.is_empty() && may_be_empty {
        return Ok(());
    }
    let rest = url.strip_prefix("rtsp://").or_else(|| url.strip_prefix("rtsps://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !url.contains(char::is_whitespace) => Ok(()),
        _ => Err(Error::invalid(format!("key `{key}`: expected rtsp://host[:port]/path, got {:?}", redact_url(url)))),
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    mask_password(url, "***")
}

/// The URL with the password of its userinfo (up to the last `@` before the path)
/// replaced by `mask`.
fn mask_password(url: &str, mask: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, host) = match rest.split_once('/') {
            Some((a, _)) => (a, &rest[a.len()..]),
            None => (rest, ""),
        };
        if let Some((cred, hostpart)) = auth.rsplit_once('@') {
            let Some((user, _)) = cred.split_once(':') else { return url.to_string() };
            return format!("{scheme}://{user}:{mask}@{hostpart}{host}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn full_spec_example_parses() {
        let cfg = Config::parse(
            r#"
data_dir = "/var/lib/homehub"
[web]
listen = "0.0.0.0:8443"
allow_public_clients = false
[mqtt]
listen_tls = "0.0.0.0:8883"
listen_plain = "127.0.0.1:1883"
[mdns]
enabled = true
interfaces = ["lo"]
[recording]
mode = "continuous"
segment_seconds = 10
retain_days = 14
max_disk_gb = 0.5
min_free_percent = 10
[motion]
fps = 5
pre_roll_seconds = 5
post_roll_seconds = 10
[decode]
prefer = ["v4l2h264dec", "avdec_h264"]
[cloud]
store = ""
[[camera]]
name = "Porch"
url = "rtsp://192.0.2.10:554/stream1"
substream_url = ""
"#,
        )
        .unwrap();
        assert_eq!(cfg.recording.mode, RecordingMode::Continuous);
        assert_eq!(cfg.recording.max_disk_gb, 0.5);
        assert_eq!(cfg.camera[0].name, "Porch");
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_eq!(err("colour = 1"), "unknown key `colour`");
        assert_eq!(err("[web]\nlisten_port = 1"), "unknown key `web.listen_port`");
        assert_eq!(err("[[camera]]\nname=\"a\"\nurl=\"rtsp://h/x\"\nuser=\"x\""), "unknown key `camera[0].user`");
    }

    #[test]
    fn wrong_types_and_values_are_named() {
        assert!(err("[recording]\nsegment_seconds = \"ten\"").starts_with("key `recording.segment_seconds`"));
        assert!(err("[recording]\nmode = \"always\"").starts_with("key `recording.mode`"));
        assert!(err("[recording]\nsegment_seconds = 0").starts_with("key `recording.segment_seconds`"));
        assert!(err("[web]\nlisten = \"8443\"").starts_with("key `web.listen`"));
        assert!(err("[motion]\nfps = 31").starts_with("key `motion.fps`"));
        assert!(err("[recording]\nmax_disk_gb = -1").starts_with("key `recording.max_disk_gb`"));
        assert!(err("[cloud]\nstore = \"ftp://x\"").starts_with("key `cloud.store`"));
        assert!(err("[[camera]]\nname=\"a\"\nurl=\"http://h/x\"").starts_with("key `camera[0].url`"));
        assert!(
            err("[[camera]]\nname=\"a\"\nurl=\"rtsp://h/x\"\n[[camera]]\nname=\"a\"\nurl=\"rtsp://h/y\"")
                .starts_with("key `camera[1].name`")
        );
    }

    #[test]
    fn syntax_errors_give_a_line() {
        let e = err("[web]\nlisten = ");
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("rtsp://admin:secret@10.0.0.2:554/s"), "rtsp://admin:***@10.0.0.2:554/s");
        assert_eq!(redact_url("rtsp://10.0.0.2/s"), "rtsp://10.0.0.2/s");
        assert_eq!(redact_url("rtsp://token@10.0.0.2/s"), "rtsp://token@10.0.0.2/s");
    }

    #[test]
    fn debug_of_the_config_shows_no_secret() {
        let cfg = Config::parse(
            r#"
[cloud]
store = "s3://bucket/p"
endpoint = "https://minio:miniopass@10.0.0.3:9000"
recipients = ["age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"]
access_key_id = "AKIAEXAMPLEKEYID"
secret_access_key = "wJalrXUtnFEMIbPxRfiCYEXAMPLEKEY"
[[camera]]
name = "Porch"
url = "rtsp://admin:hunter2@192.0.2.10:554/stream1"
substream_url = "rtsp://admin:p@ss:w0rd@192.0.2.10:554/stream2"
"#,
        )
        .unwrap();
        let shown = format!("{cfg:?} {cfg:#?}");
        for secret in ["AKIAEXAMPLEKEYID", "wJalrXUtnFEMIbPxRfiCYEXAMPLEKEY", "hunter2", "p@ss", "w0rd", "miniopass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("access_key_id: \"<redacted>\""), "{shown}");
        assert!(shown.contains("secret_access_key: \"<redacted>\""), "{shown}");
        assert!(shown.contains("rtsp://admin:<redacted>@192.0.2.10:554/stream1"), "{shown}");
        assert!(shown.contains("s3://bucket/p") && shown.contains("Porch"), "the rest is still shown: {shown}");
        // Unset secrets are shown as unset.
        assert!(format!("{:?}", Config::default()).contains("secret_access_key: \"\""));
    }
}
