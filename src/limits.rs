//! Limits on what clients can make the hub hold: file descriptors and connections per
//! client address, shared by every listener (web, MQTT).
//!
//! Owns: the process's descriptor budget (the soft `RLIMIT_NOFILE`, raised to the hard
//! limit at start when allowed), the reserve kept for recording, the database and
//! GStreamer, and the slots network connections take out of the rest; per-address
//! connection counts; the once-a-minute log line when a cap refuses someone.
//!
//! Invariant: a listener takes a [`Slots`] permit for every descriptor a client costs
//! *before* it keeps the socket (accept, check, close at once when refused). What is left
//! after every permit is taken is [`Descriptors::reserve`], which recording always has.
//! When a cap is hit the hub refuses new clients and goes on recording.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors never given to network clients: segment files, the database and its WAL,
/// GStreamer's pipes and sockets (a few dozen per camera), mDNS, TLS files, logs.
///
/// Measured (debug build, software decode): 8 cameras with main and sub streams over UDP
/// hold ~300 descriptors with no client at all (~35 a camera: 2 RTSP sockets, 8 RTP/RTCP
/// sockets, ~10 eventfds, the open segment) and no event running. Events add a clip and
/// a cloud piece pipeline per camera, stills and exports a few each, and a hardware
/// decoder (a Pi's v4l2h264dec) some ten dmabuf descriptors per camera: 512 keeps a house
/// of 8 cameras recording through all of that at once.
pub const RESERVE: u64 = 512;
/// The fewest slots clients get, however low the limit (a hub with a tiny limit still
/// answers its owner).
const MIN_SLOTS: u64 = 32;
/// The most the hub raises its soft limit to.
pub const RAISE_TO: u64 = 65_536;

/// The process's descriptor budget.
#[derive(Clone)]
pub struct Descriptors {
    limit: u64,
    reserve: u64,
    slots: Slots,
}

impl Descriptors {
    /// Reads (and where allowed raises) the soft descriptor limit, and splits it into the
    /// reserve and the slots clients share.
    pub fn init() -> Descriptors {
        let limit = raise_soft_limit();
        Descriptors::with_limit(limit)
    }

    /// A budget for a given limit (tests, and `init`).
    pub fn with_limit(limit: u64) -> Descriptors {
        let slots = limit.saturating_sub(RESERVE).max(MIN_SLOTS);
        let reserve = limit.saturating_sub(slots);
        Descriptors { limit, reserve, slots: Slots::new(slots as usize) }
    }

    /// The soft limit in force.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Descriptors kept for recording and the database.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// What network clients share.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }
}

/// The soft `RLIMIT_NOFILE` after raising it toward the hard limit (at most [`RAISE_TO`]).
// `rlim_t` is u64 on this target, not on every one libc supports: the casts stay.
#[allow(clippy::unnecessary_cast)]
fn raise_soft_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    let want = lim.rlim_max.min(RAISE_TO as libc::rlim_t);
    if want > lim.rlim_cur {
        let new = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard
        // one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            return want as u64;
        }
    }
    lim.rlim_cur as u64
}

/// This process's (soft, hard) `RLIMIT_NOFILE`; None where it cannot be read.
#[allow(clippy::unnecessary_cast)]
pub fn nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Descriptors open in this process now (`/proc/self/fd`); None where that cannot be read.
pub fn open_descriptors() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64)
}

/// Descriptor slots for network clients, shared by every listener.
#[derive(Clone)]
pub struct Slots {
    sem: Arc<Semaphore>,
    total: usize,
    refused: Arc<AtomicU64>,
    log: Arc<RateLog>,
}

impl Slots {
    pub fn new(total: usize) -> Slots {
        Slots { sem: Arc::new(Semaphore::new(total)), total, refused: Arc::default(), log: Arc::new(RateLog::default()) }
    }

    /// `n` descriptors for a client, or None (counted, and logged at most once a minute
    /// naming `what`) when they are all taken.
    pub fn take(&self, n: u32, what: &str) -> Option<Slot> {
        match self.sem.clone().try_acquire_many_owned(n) {
            Ok(p) => Some(Slot { _permit: p }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                self.log.warn(&format!(
                    "descriptor budget for clients is used up ({} slots): refusing {what}; recording goes on",
                    self.total
                ));
                None
            }
        }
    }

    /// Slots in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        self.sem.available_permits()
    }

    /// Clients refused for want of a slot since start.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Descriptors held for one client; given back on drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Connections per client address, capped.
pub struct PerAddress {
    cap: usize,
    what: &'static str,
    counts: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    log: RateLog,
}

impl PerAddress {
    /// `what` names the listener in the log ("web", "MQTT", "MQTT pairing").
    pub fn new(cap: usize, what: &'static str) -> Arc<PerAddress> {
        Arc::new(PerAddress { cap, what, counts: Mutex::default(), refused: AtomicU64::new(0), log: RateLog::default() })
    }

    /// A place for one more connection from `ip`, or None (counted, logged at most once a
    /// minute) when `ip` already holds `cap`.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = canonical(ip);
        {
            let mut m = crate::sync::lock(&self.counts);
            let n = m.entry(ip).or_insert(0);
            if *n < self.cap {
                *n += 1;
                return Some(AddressSlot { of: self.clone(), ip });
            }
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.log.warn(&format!("{}: {ip} already holds {} connections; refusing more from it", self.what, self.cap));
        None
    }

    /// Connections `ip` holds now.
    pub fn count(&self, ip: IpAddr) -> usize {
        crate::sync::lock(&self.counts).get(&canonical(ip)).copied().unwrap_or(0)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// An IPv4-mapped IPv6 address counts as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One connection's place in a [`PerAddress`]; given back on drop.
pub struct AddressSlot {
    of: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = crate::sync::lock(&self.of.counts);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A warning logged at most once a minute (with how many were held back).
#[derive(Default)]
pub struct RateLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLog {
    pub const EVERY: Duration = Duration::from_secs(60);

    pub fn warn(&self, msg: &str) {
        let mut s = crate::sync::lock(&self.state);
        let due = s.0.is_none_or(|t| t.elapsed() >= Self::EVERY);
        if due {
            let held = std::mem::take(&mut s.1);
            s.0 = Some(Instant::now());
            drop(s);
            if held > 0 {
                tracing::warn!(more_since_last = held, "{msg}");
            } else {
                tracing::warn!("{msg}");
            }
        } else {
            s.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_out_of_client_slots() {
        let d = Descriptors::with_limit(1024);
        assert_eq!(d.limit(), 1024);
        assert_eq!(d.reserve(), RESERVE);
        assert_eq!(d.slots().total() as u64 + d.reserve(), 1024);
        let tiny = Descriptors::with_limit(100);
        assert_eq!(tiny.slots().total() as u64, MIN_SLOTS);
    }

    #[test]
    fn slots_run_out_and_come_back() {
        let s = Slots::new(3);
        let a = s.take(2, "test").unwrap();
        assert!(s.take(2, "test").is_none());
        assert_eq!(s.refused_total(), 1);
        let b = s.take(1, "test").unwrap();
        assert_eq!(s.free(), 0);
        drop(a);
        drop(b);
        assert_eq!(s.free(), 3);
    }

    #[test]
    fn each_address_has_its_own_cap() {
        let p = PerAddress::new(2, "test");
        let one: IpAddr = "192.168.1.5".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.168.1.5".parse().unwrap();
        let a = p.enter(one).unwrap();
        let _b = p.enter(mapped).unwrap();
        assert!(p.enter(one).is_none(), "a mapped address is the same client");
        assert!(p.enter("192.168.1.6".parse().unwrap()).is_some());
        drop(a);
        assert_eq!(p.count(one), 1);
        assert!(p.enter(one).is_some());
        assert_eq!(p.refused_total(), 1);
    }

    #[test]
    fn the_soft_limit_is_readable() {
        assert!(raise_soft_limit() >= 64);
        assert!(open_descriptors().unwrap() > 0);
    }
}
