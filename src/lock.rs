//! A mutex that knows which thread holds it, so that taking it again on the same thread is an
//! error instead of a deadlock.
//!
//! The selector's state is only ever locked for a few native steps, never across Python code.
//! If a future change breaks that rule (a `__del__` run by an allocation under the lock, say),
//! the re-entrant call fails with `Reentered` and the program sees an exception, not a hang.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LockResult, Mutex, MutexGuard, TryLockError};

/// The lock was already held by the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reentered;

pub struct OwnedMutex<T> {
    mutex: Mutex<T>,
    /// The holder's thread token, 0 when free. Only the holder writes its own token, so a
    /// thread reads its own token here exactly when it holds the lock (Relaxed suffices: a
    /// thread always sees its own last write, and no other thread writes that value).
    owner: AtomicUsize,
}

/// A number unique to the calling thread among live threads: its pthread id (one load from
/// the thread pointer; a thread-local's address would cost a `__tls_get_addr` call in a
/// shared library). Never 0, the "free" value, for a live thread.
#[cfg(unix)]
#[inline]
fn thread_token() -> usize {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as usize }
}

/// Windows: the thread id (read from the thread environment block), unique among live
/// threads and never 0.
#[cfg(windows)]
fn thread_token() -> usize {
    // SAFETY: GetCurrentThreadId has no preconditions and cannot fail.
    unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() as usize }
}

impl<T> OwnedMutex<T> {
    pub fn new(value: T) -> Self {
        OwnedMutex {
            mutex: Mutex::new(value),
            owner: AtomicUsize::new(0),
        }
    }

    /// Waits for the lock; fails at once if this thread already holds it.
    pub fn lock(&self) -> Result<OwnedGuard<'_, T>, Reentered> {
        self.lock_with(Mutex::lock)
    }

    /// As `lock`, with `wait` taking the mutex (the binding's waits detach from Python
    /// meanwhile); it is called only after a `try_lock` found the mutex taken.
    #[inline]
    pub fn lock_with<'a>(
        &'a self,
        wait: impl FnOnce(&'a Mutex<T>) -> LockResult<MutexGuard<'a, T>>,
    ) -> Result<OwnedGuard<'a, T>, Reentered> {
        // Uncontended, as it always is under the GIL, this is one try_lock and no owner
        // check: a thread that holds the lock finds it taken too, and only then reads the
        // owner. A panic cannot leave the state half-changed in a way that matters more than
        // refusing every later call would, so a poisoned lock is simply taken over.
        match self.mutex.try_lock() {
            Ok(guard) => Ok(self.own(guard, thread_token())),
            Err(TryLockError::Poisoned(p)) => Ok(self.own(p.into_inner(), thread_token())),
            Err(TryLockError::WouldBlock) => self.lock_taken(wait),
        }
    }

    /// `lock_with` once the mutex was found taken: by this thread (an error), or by another
    /// (wait for it).
    #[cold]
    #[inline(never)]
    fn lock_taken<'a>(
        &'a self,
        wait: impl FnOnce(&'a Mutex<T>) -> LockResult<MutexGuard<'a, T>>,
    ) -> Result<OwnedGuard<'a, T>, Reentered> {
        let me = thread_token();
        if self.owner.load(Ordering::Relaxed) == me {
            return Err(Reentered);
        }
        let guard = wait(&self.mutex).unwrap_or_else(|p| p.into_inner());
        Ok(self.own(guard, me))
    }

    /// The lock if it is free now (garbage-collector hooks must never wait).
    pub fn try_lock(&self) -> Option<OwnedGuard<'_, T>> {
        let guard = match self.mutex.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(self.own(guard, thread_token()))
    }

    #[inline]
    fn own<'a>(&'a self, guard: MutexGuard<'a, T>, me: usize) -> OwnedGuard<'a, T> {
        self.owner.store(me, Ordering::Relaxed);
        OwnedGuard {
            guard,
            owner: &self.owner,
        }
    }
}

pub struct OwnedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    owner: &'a AtomicUsize,
}

impl<T> Drop for OwnedGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Before the mutex itself is released (fields drop after this body).
        self.owner.store(0, Ordering::Relaxed);
    }
}

impl<T> Deref for OwnedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for OwnedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_second_lock_on_the_holding_thread_is_refused() {
        let lock = OwnedMutex::new(1);
        let held = lock.lock().unwrap();
        assert_eq!(lock.lock().err(), Some(Reentered));
        assert!(lock.try_lock().is_none());
        drop(held);
        assert_eq!(*lock.lock().unwrap(), 1);
    }

    #[test]
    fn another_thread_waits_instead() {
        let lock = Arc::new(OwnedMutex::new(0));
        let mut held = lock.lock().unwrap();
        let other = Arc::clone(&lock);
        let waiter = std::thread::spawn(move || *other.lock().expect("not re-entrant") + 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        *held = 41;
        drop(held);
        assert_eq!(waiter.join().unwrap(), 42);
    }
}
