//! mDNS (SPEC "mDNS"): the hub advertises `_homehub._tcp` and keeps a live list of devices
//! waiting to pair (`_homehub-dev._tcp`) and of RTSP cameras (`_rtsp._tcp`); a device finds
//! the hub and announces itself while it waits.
//!
//! Owns: the mdns-sd daemons, the choice of interfaces, the TXT records and their checks.
//! May not touch the store, MQTT or the web: the hub hands in what to advertise and reads
//! [`Mdns::candidates`]; what a candidate means is decided elsewhere.
//!
//! Every daemon here sends and listens only on the interfaces it was given: it starts with
//! all of them disabled and enables the named ones (`[]` = every up, non-loopback interface,
//! and only its private, link-local or ULA addresses). Tests use `lo` only.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, IfPredicate, Receiver, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;
use tracing::{debug, warn};

use crate::error::{Error, ErrorKind, Result};
use crate::sync::lock;

/// What the hub advertises.
pub const HUB_SERVICE: &str = "_homehub._tcp.local.";
/// What a device waiting to be paired advertises.
pub const DEVICE_SERVICE: &str = "_homehub-dev._tcp.local.";
/// Plain RTSP cameras a user may add by hand.
pub const RTSP_SERVICE: &str = "_rtsp._tcp.local.";

/// Most candidates kept, so a noisy network cannot grow the list without end.
const MAX_CANDIDATES: usize = 256;
/// Most TXT entries kept per candidate, and their sizes.
const MAX_TXT: usize = 32;
const MAX_TXT_KEY: usize = 64;
const MAX_TXT_VALUE: usize = 255;
/// How long to wait for goodbye packets and for a daemon to stop.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// DNS labels are at most 63 bytes.
const MAX_LABEL: usize = 63;

/// What the hub puts in its advert (TXT `v=1`, `id`, `mqtt`, `fp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAdvert {
    pub hub_id: String,
    pub web_port: u16,
    pub mqtt_port: u16,
    /// Hex SHA-256 of the hub's TLS certificate (DER).
    pub fp: String,
}

/// A device or camera seen on the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// `"device"` (`_homehub-dev._tcp`) or `"rtsp"` (`_rtsp._tcp`).
    pub kind: &'static str,
    /// The instance name, without the service type.
    pub instance: String,
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    pub txt: BTreeMap<String, String>,
}

/// A hub found by [`find_hub`], its TXT records checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundHub {
    pub host: IpAddr,
    pub web_port: u16,
    pub mqtt_port: u16,
    pub hub_id: String,
    /// Lowercase hex SHA-256 of the hub's certificate (DER), to pin.
    pub fp: String,
}

/// One service from [`browse`]: instance name, addresses, port, TXT records.
pub type Browsed = (String, Vec<IpAddr>, u16, BTreeMap<String, String>);

type CandidateMap = BTreeMap<(&'static str, String), Candidate>;

/// The hub's mDNS: its advert and the live list of candidates.
pub struct Mdns {
    daemon: ServiceDaemon,
    candidates: Arc<Mutex<CandidateMap>>,
    browsers: Vec<JoinHandle<()>>,
    /// Full name of the hub advert, once made.
    advert: Mutex<Option<String>>,
}

impl Mdns {
    /// Starts a daemon on `interfaces` (`[]` = every up, non-loopback interface with a
    /// private address) and starts browsing for devices and RTSP cameras.
    pub fn start(interfaces: &[String]) -> Result<Mdns> {
        // Built first, so that an error below stops the daemon (Drop).
        let mut mdns = Mdns {
            daemon: daemon_on(interfaces)?,
            candidates: Arc::new(Mutex::new(CandidateMap::new())),
            browsers: Vec::new(),
            advert: Mutex::new(None),
        };
        for (kind, service) in [("device", DEVICE_SERVICE), ("rtsp", RTSP_SERVICE)] {
            let rx = mdns.daemon.browse(service).map_err(|e| mdns_error("browsing", service, e))?;
            let list = Arc::clone(&mdns.candidates);
            let handle = std::thread::Builder::new()
                .name(format!("mdns-{kind}"))
                .spawn(move || watch(rx, kind, &list))
                .map_err(|e| Error::internal(format!("mDNS: cannot start the browse thread: {e}")))?;
            mdns.browsers.push(handle);
        }
        Ok(mdns)
    }

    /// Advertises the hub as `homehub-<first 8 of hub id>._homehub._tcp.local.` on its web
    /// port, with the addresses of the allowed interfaces. A second call replaces the first.
    pub fn advertise_hub(&self, ad: &HubAdvert) -> Result<()> {
        check_hub_id(&ad.hub_id).map_err(|e| Error::invalid(format!("mDNS hub id: {e}")))?;
        check_fp(&ad.fp).map_err(|e| Error::invalid(format!("mDNS fp: {e}")))?;
        let instance = format!("homehub-{}", ad.hub_id.chars().take(8).collect::<String>());
        let mqtt = ad.mqtt_port.to_string();
        let txt = [("v", "1"), ("id", ad.hub_id.as_str()), ("mqtt", mqtt.as_str()), ("fp", ad.fp.as_str())];
        let info = service_info(HUB_SERVICE, &instance, ad.web_port, &txt)?;
        let fullname = info.get_fullname().to_string();
        let mut current = lock(&self.advert);
        if let Some(old) = current.take() {
            unregister(&self.daemon, &old);
        }
        self.daemon.register(info).map_err(|e| mdns_error("advertising", HUB_SERVICE, e))?;
        *current = Some(fullname);
        Ok(())
    }

    /// Devices waiting to pair and RTSP cameras seen so far and not gone, sorted by kind
    /// and instance.
    pub fn candidates(&self) -> Vec<Candidate> {
        lock(&self.candidates).values().cloned().collect()
    }

    /// Withdraws the advert (goodbye packets) and stops the daemon and its threads.
    pub fn shutdown(mut self) {
        if let Some(name) = lock(&self.advert).take() {
            unregister(&self.daemon, &name);
        }
        if stop(&self.daemon) {
            for handle in self.browsers.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        // After shutdown() this finds the daemon gone, which is fine.
        let _ = self.daemon.shutdown();
    }
}

/// Keeps `list` up to date from one browse until the daemon stops.
fn watch(rx: Receiver<ServiceEvent>, kind: &'static str, list: &Mutex<CandidateMap>) {
    while let Ok(event) = rx.recv() {
        match event {
            ServiceEvent::ServiceResolved(svc) => {
                let candidate = Candidate {
                    kind,
                    instance: instance_name(&svc.fullname, &svc.ty_domain),
                    addrs: addresses(&svc),
                    port: svc.port,
                    txt: txt_map(&svc),
                };
                let mut list = lock(list);
                let key = (kind, svc.fullname.clone());
                if list.len() >= MAX_CANDIDATES && !list.contains_key(&key) {
                    warn!(instance = %candidate.instance, "mDNS: too many candidates, ignoring one more");
                    continue;
                }
                debug!(kind, instance = %candidate.instance, "mDNS: candidate found");
                list.insert(key, candidate);
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                debug!(kind, %fullname, "mDNS: candidate gone");
                lock(list).remove(&(kind, fullname));
            }
            _ => {}
        }
    }
}

/// Device side: a device's announcement that it waits to be paired. Dropping it (or
/// [`DeviceAdvert::stop`]) withdraws it.
pub struct DeviceAdvert {
    daemon: Option<ServiceDaemon>,
    interface: String,
    fullname: String,
}

impl DeviceAdvert {
    /// Like [`find_hub`], on this advert's daemon (one daemon, one multicast join, however
    /// often a waiting device looks).
    pub fn find_hub(&self, timeout: Duration) -> Result<FoundHub> {
        self.find_hub_where(timeout, |_| true)
    }

    pub(crate) fn find_hub_where(&self, timeout: Duration, accept: impl Fn(&FoundHub) -> bool) -> Result<FoundHub> {
        match &self.daemon {
            Some(daemon) => find_hub_on(daemon, &self.interface, timeout, accept),
            None => Err(Error::internal("mDNS: the device advert was stopped")),
        }
    }

    pub fn stop(mut self) {
        self.withdraw();
    }

    fn withdraw(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            unregister(&daemon, &self.fullname);
            stop(&daemon);
        }
    }
}

impl std::fmt::Debug for DeviceAdvert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAdvert").field("fullname", &self.fullname).finish()
    }
}

impl Drop for DeviceAdvert {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// Device side: advertises `<device id>._homehub-dev._tcp.local.` on `interface` only, on
/// `rtsp_port`, with TXT `v=1`, `id=<device id>`.
pub fn advertise_device(interface: &str, device_id: &str, rtsp_port: u16) -> Result<DeviceAdvert> {
    crate::pairing::check_device_id(device_id).map_err(|e| Error::invalid(format!("device id: {e}")))?;
    let instance: String = device_id.chars().take(MAX_LABEL).collect();
    let info = service_info(DEVICE_SERVICE, &instance, rtsp_port, &[("v", "1"), ("id", device_id)])?;
    let fullname = info.get_fullname().to_string();
    let daemon = daemon_on(&[interface.to_string()])?;
    // Made before registering, so that a failure stops the daemon (Drop).
    let advert = DeviceAdvert { daemon: Some(daemon), interface: interface.to_string(), fullname };
    if let Some(daemon) = &advert.daemon {
        daemon.register(info).map_err(|e| mdns_error("advertising", DEVICE_SERVICE, e))?;
    }
    Ok(advert)
}

/// Device side: the first hub that answers on `interface` within `timeout`.
pub fn find_hub(interface: &str, timeout: Duration) -> Result<FoundHub> {
    find_hub_where(interface, timeout, |_| true)
}

/// The first hub on `interface` that `accept` likes (camsim picks one by fingerprint, tests
/// pick theirs by id).
pub(crate) fn find_hub_where(interface: &str, timeout: Duration, accept: impl Fn(&FoundHub) -> bool) -> Result<FoundHub> {
    let daemon = daemon_on(&[interface.to_string()])?;
    let found = find_hub_on(&daemon, interface, timeout, accept);
    stop(&daemon);
    found
}

/// Browses for hubs on a running daemon until `accept` likes one or `timeout` passes.
fn find_hub_on(
    daemon: &ServiceDaemon,
    interface: &str,
    timeout: Duration,
    accept: impl Fn(&FoundHub) -> bool,
) -> Result<FoundHub> {
    let rx = daemon.browse(HUB_SERVICE).map_err(|e| mdns_error("browsing", HUB_SERVICE, e))?;
    let deadline = Instant::now() + timeout;
    let found = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(ServiceEvent::ServiceResolved(svc)) => match hub_from(&svc) {
                Ok(hub) if accept(&hub) => break Some(hub),
                Ok(hub) => debug!(hub_id = %hub.hub_id, "mDNS: not the hub we look for"),
                Err(why) => warn!(instance = %svc.fullname, "mDNS: ignoring a hub advert: {why}"),
            },
            Ok(_) => {}
            Err(_) => break None,
        }
    };
    let _ = daemon.stop_browse(HUB_SERVICE);
    found.ok_or_else(|| {
        Error::not_found(format!("no homehub answered on mDNS interface {interface} within {:.1} s", timeout.as_secs_f64()))
    })
}

/// A one-shot browse of `service` (`_rtsp._tcp`, with or without `.local.`) on `interface`
/// for `timeout`; what is still there at the end, sorted by instance name.
pub fn browse(interface: &str, service: &str, timeout: Duration) -> Result<Vec<Browsed>> {
    let service = service_type(service)?;
    let daemon = daemon_on(&[interface.to_string()])?;
    let rx = match daemon.browse(&service) {
        Ok(rx) => rx,
        Err(e) => {
            stop(&daemon);
            return Err(mdns_error("browsing", &service, e));
        }
    };
    let deadline = Instant::now() + timeout;
    let mut seen: BTreeMap<String, Browsed> = BTreeMap::new();
    while let Ok(event) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        match event {
            ServiceEvent::ServiceResolved(svc) => {
                let instance = instance_name(&svc.fullname, &svc.ty_domain);
                let entry = (instance, addresses(&svc), svc.port, txt_map(&svc));
                seen.insert(svc.fullname.clone(), entry);
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                seen.remove(&fullname);
            }
            _ => {}
        }
    }
    stop(&daemon);
    let mut out: Vec<Browsed> = seen.into_values().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A daemon that sends and listens only on `interfaces` (`[]`: see the module header).
/// The selection is queued before anything else, so nothing is sent elsewhere.
fn daemon_on(interfaces: &[String]) -> Result<ServiceDaemon> {
    for name in interfaces {
        check_interface(name)?;
    }
    let daemon = ServiceDaemon::new().map_err(|e| Error::new(ErrorKind::Unavailable, format!("mDNS: cannot start: {e}")))?;
    let selected = daemon.disable_interface(IfKind::All).and_then(|()| {
        if interfaces.is_empty() {
            daemon.enable_interface(IfKind::Predicate(IfPredicate::new(|intf| !intf.is_loopback() && on_lan(intf.ip()))))
        } else {
            daemon.enable_interface(interfaces.iter().map(|n| IfKind::Name(n.clone())).collect::<Vec<_>>())
        }
    });
    if let Err(e) = selected {
        let _ = daemon.shutdown();
        return Err(Error::internal(format!("mDNS: cannot choose interfaces: {e}")));
    }
    Ok(daemon)
}

/// The interface must exist now; a typo would otherwise advertise nowhere without a word.
fn check_interface(name: &str) -> Result<()> {
    let bad = || Error::invalid(format!("mDNS interface '{name}' does not exist"));
    let c = CString::new(name).map_err(|_| bad())?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 { Err(bad()) } else { Ok(()) }
}

/// An address of an interface mDNS may use by default: on the home network, not loopback.
fn on_lan(ip: IpAddr) -> bool {
    !ip.is_loopback() && crate::lan::is_lan(ip)
}

/// A service on the allowed interfaces' addresses, host `<instance>.local.`.
fn service_info(service: &str, instance: &str, port: u16, txt: &[(&str, &str)]) -> Result<ServiceInfo> {
    let host = format!("{}.local.", instance.chars().take(MAX_LABEL).collect::<String>());
    ServiceInfo::new(service, instance, &host, "", port, txt)
        .map(ServiceInfo::enable_addr_auto)
        .map_err(|e| mdns_error("describing", service, e))
}

fn unregister(daemon: &ServiceDaemon, fullname: &str) {
    match daemon.unregister(fullname) {
        // Waiting lets the goodbye packets go out before the daemon stops.
        Ok(rx) => {
            let _ = rx.recv_timeout(STOP_WAIT);
        }
        Err(e) => debug!(%fullname, "mDNS: unregister: {e}"),
    }
}

/// Stops a daemon; true once it said it stopped.
fn stop(daemon: &ServiceDaemon) -> bool {
    match daemon.shutdown() {
        Ok(rx) => rx.recv_timeout(STOP_WAIT).is_ok(),
        Err(_) => false,
    }
}

fn mdns_error(doing: &str, service: &str, e: mdns_sd::Error) -> Error {
    Error::internal(format!("mDNS: {doing} {service}: {e}"))
}

/// `_name._tcp`, `_name._tcp.local` or `_name._tcp.local.` (or `_udp`) → `_name._tcp.local.`.
fn service_type(s: &str) -> Result<String> {
    let bad = || Error::invalid(format!("service type: expected something like _rtsp._tcp, got '{s}'"));
    let base = s.trim_end_matches('.').trim_end_matches(".local");
    let (name, proto) = base.rsplit_once('.').ok_or_else(bad)?;
    let name_ok = name.len() >= 2
        && name.len() <= 16
        && name.starts_with('_')
        && name[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !name_ok || !(proto == "_tcp" || proto == "_udp") {
        return Err(bad());
    }
    Ok(format!("{base}.local."))
}

/// `inst._svc._tcp.local.` → `inst` (mdns-sd unescapes nothing, so the name is as sent).
fn instance_name(fullname: &str, ty_domain: &str) -> String {
    let name = fullname.strip_suffix(ty_domain).map(|s| s.trim_end_matches('.')).unwrap_or(fullname);
    name.chars().take(255).collect()
}

/// Addresses of a resolved service, IPv4 first.
fn addresses(svc: &ResolvedService) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = svc.addresses.iter().map(|a| a.to_ip_addr()).collect();
    addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    addrs.dedup();
    addrs
}

/// TXT records as text; entries that are not UTF-8 or are oversized are left out.
fn txt_map(svc: &ResolvedService) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for prop in svc.txt_properties.iter() {
        if out.len() >= MAX_TXT {
            break;
        }
        let value = match prop.val() {
            None => Some(""),
            Some(v) => std::str::from_utf8(v).ok(),
        };
        if let Some(value) = value
            && prop.key().len() <= MAX_TXT_KEY
            && value.len() <= MAX_TXT_VALUE
        {
            out.insert(prop.key().to_ascii_lowercase(), value.to_string());
        }
    }
    out
}

fn hub_from(svc: &ResolvedService) -> std::result::Result<FoundHub, String> {
    hub_from_parts(&addresses(svc), svc.port, &txt_map(svc))
}

/// Checks a hub advert: TXT `v=1`, an id, an MQTT port and a 64-hex `fp`; a usable address.
fn hub_from_parts(addrs: &[IpAddr], web_port: u16, txt: &BTreeMap<String, String>) -> std::result::Result<FoundHub, String> {
    let get = |k: &str| txt.get(k).map(String::as_str).ok_or_else(|| format!("TXT {k} missing"));
    if get("v")? != "1" {
        return Err(format!("TXT v={} is not 1", get("v")?));
    }
    let hub_id = get("id")?;
    check_hub_id(hub_id).map_err(|e| format!("TXT id: {e}"))?;
    let mqtt_port =
        get("mqtt")?.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| "TXT mqtt is not a port number".to_string())?;
    let fp = get("fp")?;
    check_fp(fp).map_err(|e| format!("TXT fp: {e}"))?;
    if web_port == 0 {
        return Err("port 0".into());
    }
    // An IPv6 link-local address needs its zone, which IpAddr cannot carry.
    let host = addrs
        .iter()
        .find(|a| !matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .copied()
        .ok_or_else(|| "no usable address".to_string())?;
    Ok(FoundHub { host, web_port, mqtt_port, hub_id: hub_id.to_string(), fp: fp.to_ascii_lowercase() })
}

fn check_hub_id(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("expected 1 to 64 letters, digits or '-'".into());
    }
    Ok(())
}

fn check_fp(s: &str) -> std::result::Result<(), String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 64 hex digits (SHA-256)".into());
    }
    Ok(())
}
