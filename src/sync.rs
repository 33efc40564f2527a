//! The one policy for poisoned locks.
//!
//! A panic while one of our mutexes is held (a bug in one camera's callback, say) must
//! not cascade into every other thread that shares the lock: the events thread, the web
//! and the other cameras go on. Every lock in the hub guards plain data (maps, counters,
//! status snapshots) that is consistent between statements, so the data of a poisoned
//! lock is used as it is; the panic itself has already been reported by the panic hook.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking over the data if a panicking thread poisoned it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_locked_does_not_poison_the_others() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("a camera callback went wrong");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
