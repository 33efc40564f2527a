//! Passwords (argon2id, behind a small [`Gate`]), session tokens (random, stored only as
//! SHA-256), and the sign-in [`Throttle`] (per client address and per account).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};
use base64::Engine;
use sha2::{Digest, Sha256};

use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::sync::lock;

pub const COOKIE: &str = "homehub_session";
pub const MIN_PASSWORD_LEN: usize = 12;

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("hashing password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    check_password(password, Some(hash))
}

/// Checks `password` against `hash` (a PHC string). With no hash (an unknown email) it does
/// the same work against nothing, so that a wrong email takes as long as a wrong password.
///
/// The argon2 memory (19 MiB at the default cost) is the calling thread's own, allocated
/// once and reused: the allocator does not give a freed block of that size back, so an
/// allocation per check would leave one behind per thread that ever checked.
pub fn check_password(password: &str, hash: Option<&str>) -> bool {
    let Some(hash) = hash else {
        let params = argon2::Params::default();
        let mut out = [0u8; 32];
        let _ = with_blocks(params.block_count(), |blocks| {
            Argon2::default().hash_password_into_with_memory(password.as_bytes(), b"not the salt of anyone", &mut out, blocks)
        });
        return false;
    };
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Ok(params), Ok(algorithm)) = (argon2::Params::try_from(&parsed), argon2::Algorithm::try_from(parsed.algorithm)) else {
        return false;
    };
    let Ok(version) = parsed.version.map(argon2::Version::try_from).transpose() else { return false };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params.clone());
    let done = with_blocks(params.block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
    });
    done.is_ok() && out.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Blocks kept per thread: the default cost's. A stored hash asking for more gets a
/// buffer of its own for that check.
const KEPT_BLOCKS: usize = argon2::Params::DEFAULT_M_COST as usize;

fn with_blocks<R>(n: usize, f: impl FnOnce(&mut [argon2::Block]) -> R) -> R {
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if n > KEPT_BLOCKS {
        return f(&mut vec![argon2::Block::default(); n]);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < KEPT_BLOCKS {
            *blocks = vec![argon2::Block::default(); KEPT_BLOCKS];
        }
        f(&mut blocks[..n])
    })
}

/// An email as the hub keeps it: trimmed, with an `@`, no blanks, at most [`EMAIL_MAX`].
pub fn check_email(email: &str) -> Result<String> {
    let email = email.trim();
    if !email.contains('@')
        || email.chars().count() > EMAIL_MAX
        || email.contains(char::is_whitespace)
        || email.chars().any(char::is_control)
    {
        return Err(Error::invalid(format!("email: not an email address: {:?}", crate::store::audit_cut(email, 64))));
    }
    Ok(email.to_string())
}

pub fn check_new_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(format!("password must be at least {MIN_PASSWORD_LEN} characters")));
    }
    Ok(())
}

/// A new random session token (what the cookie holds) and its hash (what the
/// database holds).
pub fn new_token() -> (String, Vec<u8>) {
    let raw: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A random password for the demo's owner.
pub fn random_password() -> String {
    let raw: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Longest sign-in fields; longer ones are refused before any work.
pub const EMAIL_MAX: usize = 254;
pub const PASSWORD_MAX: usize = 1024;
pub const TOTP_MAX: usize = 16;

/// Who a sign-in is for: a digest of the email in lower case, so that an entry is small
/// whatever the email, and one account is one key however it is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account([u8; 16]);

impl Account {
    pub fn of(email: &str) -> Account {
        let d = Sha256::digest(email.trim().to_lowercase().as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        Account(k)
    }

    /// Where unknown emails count once the map is full (no digest is all zeros).
    const OVERFLOW: Account = Account([0; 16]);
}

/// Where new addresses count once the map is full (no client has it).
const OVERFLOW_ADDRESS: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// Attempts allowed per window.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub attempts: usize,
    pub window: Duration,
}

/// Why a sign-in was not let through, and when to try again.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Address { retry_after: Duration },
    Account { retry_after: Duration },
}

/// Sign-in attempts per client address and per account, in sliding windows.
///
/// An attempt is reserved (counted) before its password is checked, so concurrent
/// guesses cannot all slip through between a check and a count; a success takes back
/// only the attempts of that account from that address. Each key holds at most its
/// budget of entries, and each map at most `max_keys` keys: past that, new addresses
/// (and new unknown emails) share one overflow key with the same budget, so a flood of
/// made-up emails or addresses neither grows memory nor escapes the count. Accounts that
/// exist always get their own key (there are few, and they are what is protected).
pub struct Throttle {
    clock: Clock,
    per_address: Budget,
    per_account: Budget,
    max_keys: usize,
    state: Mutex<ThrottleState>,
}

#[derive(Default)]
struct ThrottleState {
    by_address: HashMap<IpAddr, VecDeque<(Duration, Account)>>,
    by_account: HashMap<Account, VecDeque<(Duration, IpAddr)>>,
    last_prune: Option<Duration>,
}

/// One reserved attempt. Left alone it stays counted (a failure).
#[must_use = "an attempt is counted as failed unless told otherwise"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    ip: IpAddr,
    account: Account,
    at: Duration,
}

impl Throttle {
    /// The hub's budgets: 10 per address in 5 minutes, 10 per account in 15 minutes.
    pub fn new(clock: Clock) -> Throttle {
        Throttle::with(
            clock,
            Budget { attempts: 10, window: Duration::from_secs(300) },
            Budget { attempts: 10, window: Duration::from_secs(900) },
            10_000,
        )
    }

    pub fn with(clock: Clock, per_address: Budget, per_account: Budget, max_keys: usize) -> Throttle {
        Throttle { clock, per_address, per_account, max_keys, state: Mutex::default() }
    }

    /// Whether `ip` has attempts left: a cheap look before any other work (the count
    /// itself is [`Throttle::reserve`]).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        let now = self.clock.monotonic();
        let ip = canonical(ip);
        let st = lock(&self.state);
        let key = if st.by_address.contains_key(&ip) || st.by_address.len() < self.max_keys { ip } else { OVERFLOW_ADDRESS };
        let w = self.per_address.window;
        match st.by_address.get(&key) {
            Some(q) if live(q, now, w) >= self.per_address.attempts => {
                let oldest_live = q.iter().find(|(at, _)| now.saturating_sub(*at) < w).map_or(now, |(at, _)| *at);
                Err(Refusal::Address { retry_after: (oldest_live + w).saturating_sub(now) })
            }
            _ => Ok(()),
        }
    }

    /// Counts one attempt from `ip` for `account` (`known`: an account has that email),
    /// or says which budget is spent.
    pub fn reserve(&self, ip: IpAddr, account: Account, known: bool) -> Result<Attempt<'_>, Refusal> {
        let now = self.clock.monotonic();
        let ip = canonical(ip);
        let mut st = lock(&self.state);
        self.prune(&mut st, now);
        let ip = if st.by_address.contains_key(&ip) || st.by_address.len() < self.max_keys { ip } else { OVERFLOW_ADDRESS };
        let account = if known || st.by_account.contains_key(&account) || st.by_account.len() < self.max_keys {
            account
        } else {
            Account::OVERFLOW
        };
        let (pa, pc) = (self.per_address, self.per_account);
        if let Some(q) = st.by_address.get_mut(&ip) {
            expire(q, now, pa.window);
            if q.len() >= pa.attempts {
                return Err(Refusal::Address { retry_after: retry(q, now, pa.window) });
            }
        }
        if let Some(q) = st.by_account.get_mut(&account) {
            expire(q, now, pc.window);
            if q.len() >= pc.attempts {
                return Err(Refusal::Account { retry_after: retry(q, now, pc.window) });
            }
        }
        st.by_address.entry(ip).or_default().push_back((now, account));
        st.by_account.entry(account).or_default().push_back((now, ip));
        Ok(Attempt { throttle: self, ip, account, at: now })
    }

    /// Drops expired entries and empty keys, at most once a second, and only when a map
    /// is full (a full map is the only time it matters).
    fn prune(&self, st: &mut ThrottleState, now: Duration) {
        let full = st.by_address.len() >= self.max_keys || st.by_account.len() >= self.max_keys;
        if !full || st.last_prune.is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(1)) {
            return;
        }
        st.last_prune = Some(now);
        let (wa, wc) = (self.per_address.window, self.per_account.window);
        st.by_address.retain(|_, q| {
            expire(q, now, wa);
            !q.is_empty()
        });
        st.by_account.retain(|_, q| {
            expire(q, now, wc);
            !q.is_empty()
        });
    }

    /// Keys held now (addresses, accounts): tests and bounds checks.
    pub fn keys(&self) -> (usize, usize) {
        let st = lock(&self.state);
        (st.by_address.len(), st.by_account.len())
    }
}

impl Attempt<'_> {
    /// The password was right: the attempts of this account from this address are
    /// forgiven, nobody else's.
    pub fn succeeded(self) {
        let mut st = lock(&self.throttle.state);
        let st = &mut *st;
        if let Some(q) = st.by_address.get_mut(&self.ip) {
            q.retain(|(_, a)| *a != self.account);
            if q.is_empty() {
                st.by_address.remove(&self.ip);
            }
        }
        if let Some(q) = st.by_account.get_mut(&self.account) {
            q.retain(|(_, ip)| *ip != self.ip);
            if q.is_empty() {
                st.by_account.remove(&self.account);
            }
        }
    }

    /// The password was never checked (the hub was busy): this attempt does not count.
    pub fn cancel(self) {
        let mut st = lock(&self.throttle.state);
        if let Some(q) = st.by_address.get_mut(&self.ip)
            && let Some(i) = q.iter().position(|e| *e == (self.at, self.account))
        {
            q.remove(i);
        }
        if let Some(q) = st.by_account.get_mut(&self.account)
            && let Some(i) = q.iter().position(|e| *e == (self.at, self.ip))
        {
            q.remove(i);
        }
    }
}

/// An IPv4-mapped IPv6 address counts as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn expire<T>(q: &mut VecDeque<(Duration, T)>, now: Duration, window: Duration) {
    while q.front().is_some_and(|(at, _)| now.saturating_sub(*at) >= window) {
        q.pop_front();
    }
}

fn live<T>(q: &VecDeque<(Duration, T)>, now: Duration, window: Duration) -> usize {
    q.iter().filter(|(at, _)| now.saturating_sub(*at) < window).count()
}

fn retry<T>(q: &VecDeque<(Duration, T)>, now: Duration, window: Duration) -> Duration {
    q.front().map_or(Duration::ZERO, |(at, _)| (*at + window).saturating_sub(now))
}

/// Argon2 runs (19 MiB each) at most `permits` at a time, with at most `max_waiting`
/// callers queued; past that callers hear "busy" at once instead of piling up memory.
///
/// The runs happen on `permits` threads of the gate's own, not on the blocking pool: the
/// allocator keeps a freed 19 MiB block in the arena of the thread that used it, so
/// argon2 spread over many pool threads would keep that much per thread (measured: +150
/// MB after 10 checks); on two threads it is two blocks at most.
pub struct Gate {
    sem: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Gate {
    pub fn new(permits: usize, max_waiting: usize) -> Gate {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..permits {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("homehub-argon2-{i}")).spawn(move || {
                loop {
                    let job = lock(&rx).recv();
                    match job {
                        // A panicking job loses its answer (the caller hears "failed"), not the thread.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        Gate { sem: Arc::new(Semaphore::new(permits)), waiting: AtomicUsize::new(0), max_waiting, jobs: Mutex::new(tx) }
    }

    /// Runs `f` (a hash or a verify) on one of the gate's threads once a permit is free.
    /// The permit goes with `f`, so a caller that gives up does not free it early.
    pub async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R, GateError> {
        let permit = match self.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(GateError::Busy);
                }
                let _queued = Queued(&self.waiting);
                self.sem.clone().acquire_owned().await.map_err(|_| GateError::Busy)?
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = f();
            drop(permit);
            let _ = tx.send(r);
        });
        lock(&self.jobs).send(job).map_err(|_| GateError::Failed(Error::internal("the password-check threads are gone")))?;
        rx.await.map_err(|_| GateError::Failed(Error::internal("a password check failed")))
    }

    /// Callers waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub enum GateError {
    Busy,
    Failed(Error),
}

/// Counts for `/metrics`.
#[derive(Default)]
pub struct SigninStats {
    /// Passwords that reached argon2.
    pub password_checks: AtomicU64,
    /// Sign-ins refused by the throttle (429).
    pub throttled: AtomicU64,
    /// Sign-ins refused for their size (400/413) or an unfinished body.
    pub refused: AtomicU64,
    /// Sign-ins refused because argon2 was busy (503).
    pub busy: AtomicU64,
}

impl SigninStats {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_one() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!check_password("correct horse battery", None));
        // A hash asking for more memory than the kept buffer still verifies.
        let params = argon2::Params::new(argon2::Params::DEFAULT_M_COST * 2, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let big = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"bigger", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("bigger", &big));
        assert!(!verify_password("smaller", &big));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.len() >= 43);
        assert_eq!(ha, token_hash(&a));
        assert_ne!(ha, a.as_bytes());
    }

    fn throttle(tc: &crate::clock::TestClock, per_address: usize, per_account: usize, max_keys: usize) -> Throttle {
        Throttle::with(
            tc.clock(),
            Budget { attempts: per_address, window: Duration::from_secs(300) },
            Budget { attempts: per_account, window: Duration::from_secs(900) },
            max_keys,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attempts_are_counted_when_reserved_not_when_they_fail() {
        let tc = crate::clock::TestClock::at(0);
        let t = throttle(&tc, 3, 100, 100);
        let owner = Account::of("owner@example.com");
        // Three in flight at once (none has failed yet): the fourth is refused all the same.
        let held: Vec<_> = (0..3).map(|_| t.reserve(ip("192.168.1.5"), owner, true).unwrap()).collect();
        assert!(t.check_address(ip("192.168.1.5")).is_err());
        let refused = t.reserve(ip("192.168.1.5"), owner, true).err().unwrap();
        assert_eq!(refused, Refusal::Address { retry_after: Duration::from_secs(300) });
        assert!(t.reserve(ip("::ffff:192.168.1.5"), owner, true).is_err(), "a mapped address is the same client");
        assert!(t.reserve(ip("192.168.1.6"), owner, true).is_ok());
        drop(held);
        // The window slides on the hub's clock.
        tc.advance(Duration::from_secs(299));
        assert!(t.reserve(ip("192.168.1.5"), owner, true).is_err());
        tc.advance(Duration::from_secs(1));
        assert!(t.check_address(ip("192.168.1.5")).is_ok());
        assert!(t.reserve(ip("192.168.1.5"), owner, true).is_ok());
    }

    #[test]
    fn an_account_has_its_own_budget_across_addresses_and_spellings() {
        let tc = crate::clock::TestClock::at(0);
        let t = throttle(&tc, 100, 4, 100);
        for i in 0..4 {
            let email = if i % 2 == 0 { "Owner@Example.com" } else { " owner@example.com" };
            let _ = t.reserve(ip(&format!("10.0.0.{i}")), Account::of(email), true).unwrap();
        }
        let r = t.reserve(ip("10.0.0.9"), Account::of("owner@example.com"), true).err().unwrap();
        assert!(matches!(r, Refusal::Account { .. }), "{r:?}");
        // Unknown emails are accounts too.
        for i in 0..4 {
            let _ = t.reserve(ip(&format!("10.0.1.{i}")), Account::of("nobody@example.com"), false).unwrap();
        }
        assert!(t.reserve(ip("10.0.1.9"), Account::of("nobody@example.com"), false).is_err());
        tc.advance(Duration::from_secs(900));
        assert!(t.reserve(ip("10.0.0.9"), Account::of("owner@example.com"), true).is_ok());
    }

    #[test]
    fn a_success_forgives_only_its_own_account_from_its_own_address() {
        let tc = crate::clock::TestClock::at(0);
        let t = throttle(&tc, 10, 10, 100);
        let (owner, viewer) = (Account::of("owner@example.com"), Account::of("viewer@example.com"));
        let house = ip("192.168.1.20");
        // A housemate guesses the owner's password and signs in as themselves every few tries.
        for round in 0..3 {
            for _ in 0..3 {
                let _ = t.reserve(house, owner, true).unwrap();
            }
            t.reserve(house, viewer, true).unwrap().succeeded();
            assert!(t.check_address(house).is_ok(), "round {round}");
        }
        // 9 owner guesses stand; the 10th is the last this window.
        let _ = t.reserve(house, owner, true).unwrap();
        assert!(matches!(t.reserve(house, owner, true), Err(Refusal::Address { .. })));
        assert!(matches!(t.reserve(house, viewer, true), Err(Refusal::Address { .. })));

        // The owner's own success from another address forgives that address only.
        let t = throttle(&tc, 10, 5, 100);
        for _ in 0..3 {
            let _ = t.reserve(house, owner, true).unwrap();
        }
        let laptop = ip("192.168.1.30");
        let _ = t.reserve(laptop, owner, true).unwrap();
        t.reserve(laptop, owner, true).unwrap().succeeded();
        // The housemate's 3 still count against the owner's account: 2 left, not 5.
        let _ = t.reserve(ip("192.168.1.40"), owner, true).unwrap();
        let _ = t.reserve(ip("192.168.1.40"), owner, true).unwrap();
        assert!(matches!(t.reserve(ip("192.168.1.41"), owner, true), Err(Refusal::Account { .. })));
    }

    #[test]
    fn a_cancelled_attempt_does_not_count() {
        let tc = crate::clock::TestClock::at(0);
        let t = throttle(&tc, 1, 10, 100);
        let a = Account::of("a@example.com");
        t.reserve(ip("10.0.0.1"), a, true).unwrap().cancel();
        let _ = t.reserve(ip("10.0.0.1"), a, true).unwrap();
        assert!(t.reserve(ip("10.0.0.1"), a, true).is_err());
    }

    #[test]
    fn made_up_emails_and_addresses_stay_within_the_maps_bound() {
        let tc = crate::clock::TestClock::at(0);
        let t = throttle(&tc, 2, 2, 50);
        let mut refused = 0;
        for i in 0..5_000u32 {
            let addr = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            if t.reserve(addr, Account::of(&format!("guess{i}@example.com")), false).is_err() {
                refused += 1;
            }
            tc.advance(Duration::from_millis(10));
        }
        let (addrs, accounts) = t.keys();
        assert!(addrs <= 51 && accounts <= 51, "{addrs} addresses, {accounts} accounts");
        // Past the bound they share one budget: nearly all of them were refused.
        assert!(refused > 4_800, "{refused}");
        // A real account still gets its own key (from an address that has one too).
        let _ = t.reserve(IpAddr::from([10, 0, 0, 0]), Account::of("owner@example.com"), true).unwrap();
        assert_eq!(t.keys().1, accounts + 1);
        // Once the window has passed, the maps drain.
        tc.advance(Duration::from_secs(901));
        let _ = t.reserve(ip("192.168.1.3"), Account::of("owner@example.com"), true).unwrap();
        assert!(t.keys().0 <= 2 && t.keys().1 <= 2, "{:?}", t.keys());
    }

    #[tokio::test]
    async fn the_gate_runs_two_and_queues_a_few() {
        let gate = Arc::new(Gate::new(2, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let mut running = Vec::new();
        for _ in 0..3 {
            let (g, rx) = (gate.clone(), rx.clone());
            running.push(tokio::spawn(async move { g.run(move || lock(&rx).recv().is_ok()).await }));
        }
        // Two run, one waits; a fourth is told "busy" at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gate.waiting() < 1 {
            assert!(std::time::Instant::now() < deadline, "nobody queued");
            tokio::task::yield_now().await;
        }
        assert!(matches!(gate.run(|| true).await, Err(GateError::Busy)));
        for _ in 0..3 {
            tx.send(()).unwrap();
        }
        for r in running {
            assert!(r.await.unwrap().unwrap());
        }
        assert_eq!(gate.waiting(), 0);
        assert!(gate.run(|| true).await.unwrap());
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough password").is_ok());
    }
}
