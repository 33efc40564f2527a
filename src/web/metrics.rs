//! `GET /metrics`: one prometheus-client registry, filled at each scrape from what the
//! hub's parts report (cameras, the database's totals, devices, the broker edge, the
//! cloud relay, sign-in counts) and encoded in the OpenMetrics text format. Nothing here is counted on
//! a hot path: every value is a snapshot the part keeps anyway.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ports::DeviceCounts;
use crate::camera::CameraStatus;
use crate::cloud::relay::Snapshot;
use crate::devices::Device;
use crate::error::{Error, Result};
use crate::mqtt::Stats as BrokerStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera_id: i64,
}

/// api11 names the live metrics' label `camera`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LiveLabel {
    camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabel {
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// One scrape: a fresh registry, filled, then encoded.
pub struct Scrape {
    reg: Registry,
}

impl Default for Scrape {
    fn default() -> Self {
        Scrape { reg: Registry::with_prefix("homehub") }
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Scrape {
    fn gauge(&mut self, name: &str, help: &str, v: i64) {
        let g: Gauge = Gauge::default();
        g.set(v);
        self.reg.register(name, help, g);
    }

    fn gauge_f64(&mut self, name: &str, help: &str, v: f64) {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(v);
        self.reg.register(name, help, g);
    }

    /// A counter; the encoder adds `_total` to `name`.
    fn counter(&mut self, name: &str, help: &str, v: u64) {
        let c: Counter = Counter::default();
        c.inc_by(v);
        self.reg.register(name, help, c);
    }

    fn gauges<L>(&mut self, name: &str, help: &str, items: impl IntoIterator<Item = (L, i64)>)
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let f = Family::<L, Gauge>::default();
        for (l, v) in items {
            f.get_or_create(&l).set(v);
        }
        self.reg.register(name, help, f);
    }

    fn gauges_f64<L>(&mut self, name: &str, help: &str, items: impl IntoIterator<Item = (L, f64)>)
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let f = Family::<L, Gauge<f64, AtomicU64>>::default();
        for (l, v) in items {
            f.get_or_create(&l).set(v);
        }
        self.reg.register(name, help, f);
    }

    fn counters<L>(&mut self, name: &str, help: &str, items: impl IntoIterator<Item = (L, u64)>)
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let f = Family::<L, Counter>::default();
        for (l, v) in items {
            f.get_or_create(&l).inc_by(v);
        }
        self.reg.register(name, help, f);
    }

    pub fn cameras(&mut self, cams: &[CameraStatus]) {
        let by =
            |v: fn(&CameraStatus) -> i64| cams.iter().map(move |c| (CameraLabel { camera_id: c.id }, v(c))).collect::<Vec<_>>();
        let streaming = |c: &CameraStatus| i64::from(c.status.state == crate::camera::State::Streaming);
        self.gauges("camera_streaming", "1 if the camera is streaming.", by(streaming));
        self.gauges_f64(
            "camera_decoded_fps",
            "Frames per second reaching motion detection.",
            cams.iter().map(|c| (CameraLabel { camera_id: c.id }, c.status.decoded_fps)),
        );
        self.gauges("camera_motion", "1 while motion is going on.", by(|c| i64::from(c.motion)));
        self.gauges("preroll_bytes", "Encoded stream held in memory for clip pre-roll.", by(|c| int(c.preroll_bytes)));
    }

    /// Per camera: (id, live viewers now, bytes sent to live viewers).
    pub fn live(&mut self, cams: &[(i64, u64, u64)]) {
        let label = |id: i64| LiveLabel { camera: id.to_string() };
        self.gauges("live_viewers", "Live viewers watching now.", cams.iter().map(|&(id, v, _)| (label(id), int(v))));
        self.counters("live_bytes_sent", "Bytes sent to live viewers.", cams.iter().map(|&(id, _, b)| (label(id), b)));
    }

    pub fn media(&mut self, events: u64, recording_bytes: u64) {
        self.counter("events", "Motion events recorded.", events);
        self.gauge("recordings_bytes", "Bytes of indexed recordings.", int(recording_bytes));
    }

    pub fn devices(&mut self, list: &[Device], counts: DeviceCounts) {
        let paired = || list.iter().filter(|x| x.paired());
        let label = |x: &Device| DeviceLabel { device: x.id.clone() };
        self.gauge("devices_paired", "Devices paired now.", paired().count() as i64);
        self.gauges(
            "device_online",
            "1 if the device says it is online.",
            paired().map(|x| (label(x), i64::from(x.availability == "online"))),
        );
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        self.counters(
            "device_connections",
            "Broker logins of the device.",
            list.iter().map(|x| (label(x), non_negative(x.connections))),
        );
        self.counters(
            "device_failed_connections",
            "Refused broker logins under the device's name.",
            list.iter().map(|x| (label(x), non_negative(x.failed_connections))),
        );
        self.counter(
            "device_payloads_rejected",
            "Device messages refused (malformed, oversized, unknown fields, replays).",
            counts.payloads_rejected,
        );
        let outcome = |o: &str| OutcomeLabel { outcome: o.to_string() };
        self.counters(
            "pairings",
            "Pairing outcomes.",
            [(outcome("accepted"), counts.pairings_accepted), (outcome("rejected"), counts.pairings_rejected)],
        );
    }

    pub fn broker(&mut self, s: &BrokerStats) {
        self.counter("mqtt_connections", "Broker logins accepted.", s.connections_total);
        self.counter("mqtt_refused", "Broker logins refused (with a CONNACK code).", s.refused_total);
        self.counter("mqtt_denied_publish", "PUBLISH packets outside the client's topics.", s.denied_publish_total);
        self.counter("mqtt_denied_subscribe", "SUBSCRIBE filters outside the client's topics.", s.denied_subscribe_total);
        self.counter("mqtt_malformed", "Connections closed for malformed or oversized packets.", s.malformed_total);
        self.gauge("mqtt_live", "Broker connections open now.", int(s.live));
    }

    pub fn cloud(&mut self, c: &Snapshot) {
        self.gauge("cloud_queue_length", "Objects waiting to be uploaded.", int(c.queue.pending));
        self.gauge("cloud_bytes_pending", "Plaintext bytes waiting to be uploaded.", int(c.queue.bytes_pending));
        self.gauge("cloud_failed_objects", "Objects given up (their file was deleted before upload).", int(c.queue.failed));
        self.counter("cloud_uploads", "Objects uploaded since the hub started.", c.uploads);
        self.counter("cloud_upload_failures", "Failed upload attempts since the hub started.", c.failures);
        self.counter("cloud_sent_bytes", "Ciphertext bytes uploaded since the hub started.", c.bytes_sent);
        self.gauge_f64(
            "cloud_last_success_timestamp_seconds",
            "When an upload last succeeded (0 = never).",
            c.last_success_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        );
        self.gauge("cloud_reachable", "1 if the last upload attempt got through.", i64::from(c.reachable));
    }

    pub fn signin(&mut self, s: &super::auth::SigninStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.counter("password_checks", "Sign-in passwords that reached argon2.", s.password_checks.load(Relaxed));
        self.counter("signin_throttled", "Sign-ins refused by the throttle (429).", s.throttled.load(Relaxed));
        self.counter("signin_refused", "Sign-ins refused for their size or an unfinished body.", s.refused.load(Relaxed));
        self.counter("signin_busy", "Sign-ins refused while argon2 was busy (503).", s.busy.load(Relaxed));
    }

    /// The OpenMetrics text (ends with `# EOF`).
    pub fn encode(self) -> Result<String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.reg)
            .map_err(|e| Error::internal(format!("encoding /metrics: {e}")))?;
        Ok(out)
    }
}

/// The content type of [`Scrape::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_labels_are_what_dashboards_expect() {
        let mut s = Scrape::default();
        s.media(2, 1234);
        let signin = crate::web::auth::SigninStats::default();
        crate::web::auth::SigninStats::bump(&signin.password_checks);
        s.signin(&signin);
        s.live(&[(3, 2, 4096)]);
        s.cloud(&Snapshot {
            store: "file:///x".into(),
            recipients: 1,
            max_upload_kbps: 0,
            queue: crate::store::QueueStatus { bytes_pending: 5, ..Default::default() },
            uploads: 3,
            failures: 1,
            bytes_sent: 99,
            last_success_ms: Some(1_700_000_000_500),
            last_error: None,
            last_error_ms: None,
            reachable: false,
            active: true,
            last_upload: None,
            sending: None,
        });
        s.counters("device_connections", "Broker logins of the device.", [(DeviceLabel { device: "cam-a".into() }, 4u64)]);
        let text = s.encode().unwrap();
        for line in [
            "homehub_events_total 2",
            "homehub_password_checks_total 1",
            "homehub_signin_throttled_total 0",
            "homehub_signin_refused_total 0",
            "homehub_live_viewers{camera=\"3\"} 2",
            "homehub_live_bytes_sent_total{camera=\"3\"} 4096",
            "homehub_recordings_bytes 1234",
            "homehub_cloud_queue_length 0",
            "homehub_cloud_reachable 0",
            "homehub_cloud_uploads_total 3",
            "homehub_cloud_last_success_timestamp_seconds 1700000000.5",
            "homehub_device_connections_total{device=\"cam-a\"} 4",
            "# TYPE homehub_events counter",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing in:\n{text}");
        }
    }
}
