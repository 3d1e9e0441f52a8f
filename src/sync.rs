//! Locks that outlive a panic in one of their holders.
//!
//! A std lock is poisoned when a thread panics while holding it, and every later `lock()`
//! returns an error. Unwrapping that error turns one failed request into a dead
//! coordinator, timer or flusher: every later user panics too. Ferry's code does not panic
//! on input from disk or the wire, so a panic means a bug in one operation; these helpers
//! log it once, clear the poison and hand out the lock, so the rest of the broker keeps
//! serving. State whose partial update could corrupt data handles poisoning itself
//! instead (a partition takes its log offline, see `broker::partition`).

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tracing::error;

/// Locks `mutex`, recovering it if an earlier holder panicked. `what` names the lock in
/// the log line.
pub fn lock<'a, T>(mutex: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    mutex.lock().unwrap_or_else(|poisoned| {
        report(what);
        mutex.clear_poison();
        poisoned.into_inner()
    })
}

/// Read-locks `lock`, recovering it if an earlier writer panicked.
pub fn read<'a, T>(lock: &'a RwLock<T>, what: &str) -> RwLockReadGuard<'a, T> {
    lock.read().unwrap_or_else(|poisoned| {
        report(what);
        lock.clear_poison();
        poisoned.into_inner()
    })
}

/// Write-locks `lock`, recovering it if an earlier writer panicked.
pub fn write<'a, T>(lock: &'a RwLock<T>, what: &str) -> RwLockWriteGuard<'a, T> {
    lock.write().unwrap_or_else(|poisoned| {
        report(what);
        lock.clear_poison();
        poisoned.into_inner()
    })
}

/// Recovers a guard handed back by `Condvar::wait` and friends.
pub fn recover<G>(result: Result<G, PoisonError<G>>) -> G {
    result.unwrap_or_else(PoisonError::into_inner)
}

fn report(what: &str) {
    error!(
        lock = what,
        "an earlier operation panicked while holding this lock; it is released and the \
         broker continues (please report the panic above as a bug)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_holding_a_lock_does_not_break_the_next_user() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let rw = std::sync::Arc::new(RwLock::new(1));
        let (m, r) = (mutex.clone(), rw.clone());
        let panicked = std::thread::spawn(move || {
            let _guard = m.lock().unwrap();
            let _write = r.write().unwrap();
            panic!("a bug in one operation");
        })
        .join();
        assert!(panicked.is_err());
        assert!(mutex.is_poisoned() && rw.is_poisoned());
        *lock(&mutex, "test mutex") += 1;
        assert!(!mutex.is_poisoned());
        assert_eq!(*lock(&mutex, "test mutex"), 2);
        *write(&rw, "test rwlock") += 1;
        assert_eq!(*read(&rw, "test rwlock"), 2);
        assert!(!rw.is_poisoned());
    }
}
