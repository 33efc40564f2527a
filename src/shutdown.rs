//! The one shutdown signal of the hub, heard alike by threads and async tasks.
//!
//! `hub::run` makes one [`Shutdown`], hands a clone to every subsystem it starts, and
//! triggers it when the future its caller passed in resolves (in `homehub serve`, the
//! first SIGTERM/SIGINT). Threads wait with [`Shutdown::wait_timeout`] (a condition
//! variable, so a sleeping supervisor wakes at once instead of polling); tasks `.await`
//! [`Shutdown::wait`] in a `select!`. A camera that is stopped on its own (unpairing) gets
//! a [`Shutdown::child`]: it hears the hub's signal and its own.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// A cloneable stop signal. Once triggered it stays triggered.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    token: CancellationToken,
    fired: Mutex<bool>,
    cv: Condvar,
    /// Children to wake when this one fires (they may also fire alone).
    children: Mutex<Vec<std::sync::Weak<Inner>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("triggered", &self.is_triggered()).finish()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::with_token(CancellationToken::new())
    }

    fn with_token(token: CancellationToken) -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner { token, fired: Mutex::new(false), cv: Condvar::new(), children: Mutex::new(Vec::new()) }),
        }
    }

    /// A signal that fires when this one does, and can also be fired alone.
    pub fn child(&self) -> Shutdown {
        let child = Shutdown::with_token(self.inner.token.child_token());
        {
            let mut children = self.inner.children.lock().unwrap_or_else(PoisonError::into_inner);
            children.retain(|c| c.strong_count() > 0);
            children.push(Arc::downgrade(&child.inner));
        }
        if self.is_triggered() {
            child.trigger();
        }
        child
    }

    /// Fires the signal (and every child's); idempotent.
    pub fn trigger(&self) {
        self.inner.fire();
    }

    pub fn is_triggered(&self) -> bool {
        *self.inner.fired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once the signal fired.
    pub async fn wait(&self) {
        self.inner.token.cancelled().await;
    }

    /// Blocks up to `timeout`; true if the signal fired (at once, if it already had).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut fired = self.inner.fired.lock().unwrap_or_else(PoisonError::into_inner);
        while !*fired {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            fired = self.inner.cv.wait_timeout(fired, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }
}

impl Inner {
    fn fire(&self) {
        {
            let mut fired = self.fired.lock().unwrap_or_else(PoisonError::into_inner);
            if *fired {
                return;
            }
            *fired = true;
        }
        self.cv.notify_all();
        self.token.cancel();
        let children = std::mem::take(&mut *self.children.lock().unwrap_or_else(PoisonError::into_inner));
        for c in children.iter().filter_map(std::sync::Weak::upgrade) {
            c.fire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_thread_wakes_at_once() {
        let s = Shutdown::new();
        let t = {
            let s = s.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                assert!(s.wait_timeout(Duration::from_secs(30)));
                t0.elapsed()
            })
        };
        assert!(!s.wait_timeout(Duration::from_millis(10)), "not fired yet");
        s.trigger();
        assert!(t.join().unwrap() < Duration::from_secs(10));
        assert!(s.is_triggered());
        assert!(s.wait_timeout(Duration::ZERO), "stays fired");
    }

    #[tokio::test]
    async fn tasks_and_children_hear_the_parent() {
        let s = Shutdown::new();
        let child = s.child();
        let lone = s.child();
        lone.trigger();
        assert!(lone.is_triggered() && !s.is_triggered() && !child.is_triggered(), "a child fires alone");
        let task = tokio::spawn({
            let c = child.clone();
            async move { c.wait().await }
        });
        s.trigger();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert!(child.wait_timeout(Duration::ZERO));
        assert!(s.child().is_triggered(), "a child of a fired signal starts fired");
    }
}
