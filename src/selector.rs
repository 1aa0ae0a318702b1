//! What every selector does over any backend: the fd -> key table kept in step with the OS
//! registrations, with the stdlib's rules for failures. Knows nothing of Python; `K` is
//! whatever the binding stores per registration.

use crate::backend::{Backend, Error};
use crate::table::KeyTable;

pub struct Selector<B, K> {
    keys: KeyTable<K>,
    backend: B,
}

/// Why `register` failed; the key comes back so the caller can drop it where it likes.
pub enum RegisterError<K> {
    AlreadyRegistered(K),
    Backend(Error, K),
}

impl<B: Backend, K> Selector<B, K> {
    pub fn new(backend: B) -> Self {
        Selector {
            keys: KeyTable::new(),
            backend,
        }
    }

    pub fn keys(&self) -> &KeyTable<K> {
        &self.keys
    }

    /// The stored key of `fd`, to update what the binding caches in it.
    pub fn key_mut(&mut self, fd: u64) -> Option<&mut K> {
        self.keys.get_mut(fd)
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Adds the key, then the OS registration; if the OS refuses, the key goes too.
    pub fn register(&mut self, fd: u64, interest: u8, key: K) -> Result<(), RegisterError<K>> {
        self.keys
            .insert(fd, key)
            .map_err(RegisterError::AlreadyRegistered)?;
        if let Err(err) = self.backend.add(fd, interest) {
            let key = self.keys.remove(fd).expect("just inserted");
            return Err(RegisterError::Backend(err, key));
        }
        Ok(())
    }

    /// Removes the key and the OS registration. The OS may have forgotten the fd already
    /// (it was closed): that error is ignored, as the stdlib ignores it.
    pub fn unregister(&mut self, fd: u64) -> Option<K> {
        let key = self.keys.remove(fd)?;
        let _ = self.backend.remove(fd);
        Some(key)
    }

    /// Changes what the OS watches for a registered fd. On failure the key stays: the
    /// stdlib drops it through `unregister(fileobj)`, which the binding calls (it runs
    /// Python code: `fileno()` again).
    pub fn modify_interest(&mut self, fd: u64, interest: u8) -> Result<(), Error> {
        self.backend.modify(fd, interest)
    }

    /// Adds a key with no OS registration: the stdlib's `register` puts the key in its dict
    /// first, then computes the OS events (Python code that may see the key), then calls
    /// `watch`.
    pub fn insert_key(&mut self, fd: u64, key: K) -> Result<(), K> {
        self.keys.insert(fd, key)
    }

    /// Adds the OS registration of a key already inserted.
    pub fn watch(&mut self, fd: u64, interest: u8) -> Result<(), Error> {
        self.backend.add(fd, interest)
    }

    /// Removes a key, leaving any OS registration alone.
    pub fn remove_key(&mut self, fd: u64) -> Option<K> {
        self.keys.remove(fd)
    }

    /// `self._fd_to_key[fd] = key`: replaces the key of `fd` in place, or adds it when a
    /// callback unregistered the fd (or closed the selector) meanwhile, as a dict store does.
    /// Hands back the key it replaced.
    pub fn store_key(&mut self, fd: u64, key: K) -> Option<K> {
        match self.keys.replace(fd, key) {
            Ok(old) => Some(old),
            Err(key) => {
                let inserted = self.keys.insert(fd, key);
                debug_assert!(inserted.is_ok(), "replace found no key");
                None
            }
        }
    }

    /// Forgets every key (handed back for dropping) and releases the OS handle.
    pub fn close(&mut self) -> Vec<(u64, K)> {
        self.backend.close();
        self.keys.drain()
    }

    /// Forgets every key without touching the OS handle (garbage collection of a cycle).
    pub fn close_keys(&mut self) -> Vec<(u64, K)> {
        self.keys.drain()
    }

    pub fn begin_wait(&mut self) -> Result<B::Wait, Error> {
        self.backend.begin_wait(self.keys.len().max(1))
    }

    pub fn end_wait(&mut self, wait: B::Wait) {
        self.backend.end_wait(wait);
    }

    /// A zero-timeout wait made in one go: `f` gets each ready fd that has a key.
    pub fn poll_now(&mut self, f: &mut dyn FnMut(u64, &K, u8)) -> Result<(), Error> {
        let keys = &self.keys;
        self.backend.poll_now(keys.len().max(1), &mut |fd, events| {
            if let Some(key) = keys.get(fd) {
                f(fd, key, events);
            }
        })
    }
}

#[cfg(all(test, epoll))]
mod tests {
    use super::*;
    use crate::backend::epoll::Epoll;
    use crate::backend::test_support::socket_pair;
    use crate::backend::{Wait, READ, WRITE};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_refused_registration_leaves_no_key() {
        let mut sel = Selector::new(Epoll::new().unwrap());
        assert!(matches!(
            sel.register(999_999, READ, "k"),
            Err(RegisterError::Backend(Error::Os(_), "k"))
        ));
        assert!(sel.keys().is_empty());
    }

    #[test]
    fn a_refused_modify_keeps_the_key_for_the_binding_to_drop() {
        let (a, b) = socket_pair();
        let fd = b.as_raw_fd() as u64;
        let mut sel = Selector::new(Epoll::new().unwrap());
        sel.register(fd, READ, "k").ok().unwrap();
        assert!(matches!(
            sel.register(fd, READ, "again"),
            Err(RegisterError::AlreadyRegistered("again"))
        ));
        drop(b);
        let err = sel.modify_interest(fd, WRITE).unwrap_err();
        assert!(matches!(err, Error::Os(_)));
        assert_eq!(
            sel.keys().len(),
            1,
            "the binding drops the key, through fileno()"
        );
        // Unregistering an fd the OS no longer knows still hands the key back.
        let afd = a.as_raw_fd() as u64;
        sel.register(afd, READ, "a").ok().unwrap();
        drop(a);
        assert_eq!(sel.unregister(afd), Some("a"));
        assert_eq!(sel.unregister(afd), None);
    }

    #[test]
    fn close_hands_back_every_key() {
        let (a, _b) = socket_pair();
        let mut sel = Selector::new(Epoll::new().unwrap());
        sel.register(a.as_raw_fd() as u64, WRITE, 1).ok().unwrap();
        let mut wait = sel.begin_wait().unwrap();
        wait.wait(Some(Duration::ZERO)).unwrap();
        let mut seen = Vec::new();
        wait.for_each_ready(&mut |fd, ev| seen.push((fd, ev)));
        sel.end_wait(wait);
        assert_eq!(seen, vec![(a.as_raw_fd() as u64, WRITE)]);
        assert_eq!(sel.close().len(), 1);
        assert!(matches!(sel.begin_wait(), Err(Error::Closed(_))));
    }
}
