//! The one clock: wall time (ms since the Unix epoch) and monotonic time.
//!
//! Everything that decides by time (pairing expiry, lock-outs, retention by age,
//! post-roll, the silent-camera rule, upload retries) takes a [`Clock`] instead of
//! asking the system, so unit tests move time with a [`TestClock`] instead of sleeping.
//! The store never reads a clock: its callers hand it `now_ms`.
//!
//! [`now_ms`] and [`rfc3339`] are the one system-time helper and the one formatter;
//! code that has no clock to hand (the camera's frame stamps, admin commands) uses them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

/// Wall-clock time now, in ms since the Unix epoch (the system's clock).
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds: `2024-05-01T10:00:00.000Z`.
/// A time chrono cannot represent shows as the epoch.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A source of wall and monotonic time. Cheap to clone; clones share one time.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Test(Arc<TestState>),
}

struct TestState {
    wall_ms: AtomicI64,
    mono_ns: AtomicU64,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Test(t) => write!(f, "Clock::test(wall_ms = {})", t.wall_ms.load(Ordering::SeqCst)),
        }
    }
}

impl Clock {
    /// The real clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// Wall-clock time in ms since the Unix epoch. May jump (NTP, the owner setting it).
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => now_ms(),
            Source::Test(t) => t.wall_ms.load(Ordering::SeqCst),
        }
    }

    /// Monotonic time since an origin fixed per process (per test clock): for measuring
    /// intervals; never goes back, never jumps with the wall clock.
    pub fn monotonic(&self) -> Duration {
        match &self.0 {
            Source::System => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed()
            }
            Source::Test(t) => Duration::from_nanos(t.mono_ns.load(Ordering::SeqCst)),
        }
    }
}

/// A clock tests move by hand. Every [`Clock`] made from it (and their clones) sees
/// the same time.
#[derive(Clone)]
pub struct TestClock(Arc<TestState>);

impl TestClock {
    /// Wall time starts at `wall_ms`, monotonic time at zero.
    pub fn at(wall_ms: i64) -> TestClock {
        TestClock(Arc::new(TestState { wall_ms: AtomicI64::new(wall_ms), mono_ns: AtomicU64::new(0) }))
    }

    /// A [`Clock`] reading this test clock.
    pub fn clock(&self) -> Clock {
        Clock(Source::Test(self.0.clone()))
    }

    /// Moves wall and monotonic time forward together.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.wall_ms.fetch_add(ms, Ordering::SeqCst);
        self.0.mono_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Sets the wall clock alone (a jump: monotonic time does not move).
    pub fn set_wall_ms(&self, ms: i64) {
        self.0.wall_ms.store(ms, Ordering::SeqCst);
    }

    pub fn now_ms(&self) -> i64 {
        self.0.wall_ms.load(Ordering::SeqCst)
    }

    pub fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.0.mono_ns.load(Ordering::SeqCst))
    }
}

impl From<&TestClock> for Clock {
    fn from(t: &TestClock) -> Clock {
        t.clock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told_and_clones_share_it() {
        let tc = TestClock::at(1_000);
        let (a, b) = (tc.clock(), tc.clock().clone());
        assert_eq!((a.now_ms(), a.monotonic()), (1_000, Duration::ZERO));
        tc.advance(Duration::from_millis(1_500));
        assert_eq!((b.now_ms(), b.monotonic()), (2_500, Duration::from_millis(1_500)));
        // A wall-clock jump leaves monotonic time alone.
        tc.set_wall_ms(-5);
        assert_eq!((a.now_ms(), a.monotonic()), (-5, Duration::from_millis(1_500)));
    }

    #[test]
    fn the_system_clock_is_the_system_time_and_monotonic_never_goes_back() {
        let c = Clock::system();
        let (before, wall, after) = (now_ms(), c.now_ms(), now_ms());
        assert!(before <= wall && wall <= after);
        let (m1, m2) = (c.monotonic(), c.monotonic());
        assert!(m2 >= m1);
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_557_600_123), "2024-05-01T10:00:00.123Z");
    }
}
