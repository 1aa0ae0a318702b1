//! What every selector does over any backend: the fd -> key table kept in step with the OS
//! registrations, with the stdlib's rules for failures. Knows nothing of Python; `K` is
//! whatever the binding stores per registration.

use std::io;
use std::time::Duration;

use crate::backend::{Backend, Error, Wait};
use crate::sys::{is_interrupted, SharpTimers};
use crate::table::KeyTable;
use crate::timeout::{self, Deadline, Remaining, Timeout};

pub struct Selector<B, K> {
    keys: KeyTable<K>,
    backend: B,
}

/// Why `register` failed; the key comes back so the caller can drop it where it likes.
#[cfg(test)]
pub enum RegisterError<K> {
    AlreadyRegistered(K),
    Backend(Error, K),
}

/// The stdlib's `register`, `modify` and `unregister` are steps with user code between them
/// (`events & EVENT_READ`, `fileno()` again, `__eq__`): the binding calls the steps in the
/// stdlib's order and runs that code between them, without the selector's lock. `register`
/// is those steps in one go, for the tests.
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

    /// Adds the key, then the OS registration; if the OS refuses, the key goes too.
    #[cfg(test)]
    pub fn register(&mut self, fd: u64, interest: u8, key: K) -> Result<(), RegisterError<K>> {
        self.insert_key(fd, key)
            .map_err(RegisterError::AlreadyRegistered)?;
        if let Err(err) = self.watch(fd, interest) {
            let key = self.undo(fd).expect("just inserted");
            return Err(RegisterError::Backend(err, key));
        }
        Ok(())
    }

    /// Register's first step: the key goes in, with no OS registration yet (the stdlib puts
    /// the key in its dict, then computes the OS events: code that may see the key).
    pub fn insert_key(&mut self, fd: u64, key: K) -> Result<(), K> {
        self.keys.insert(fd, key)
    }

    /// Register's second step: the OS registration of a key already inserted. If the OS
    /// refuses, the caller takes the key back with `undo`.
    pub fn watch(&mut self, fd: u64, interest: u8) -> Result<(), Error> {
        self.backend.add(fd, interest)
    }

    /// Changes what the OS watches for a registered fd. If the OS refuses, the caller takes
    /// the key back with `undo`, as after a refused `watch`.
    pub fn modify_interest(&mut self, fd: u64, interest: u8) -> Result<(), Error> {
        self.backend.modify(fd, interest)
    }

    /// The stdlib's `super().unregister(fileobj)` after the OS refused a registration or a
    /// change: the key goes, and no OS call is made (there is nothing to remove). The binding
    /// finds `fd` again through `fileno()` first, as the stdlib does.
    pub fn undo(&mut self, fd: u64) -> Option<K> {
        self.keys.remove(fd)
    }

    /// Removes the key and the OS registration. The OS may have forgotten the fd already
    /// (it was closed): that error is ignored, as the stdlib ignores it. (The errors the
    /// stdlib lets through, the binding tells apart beforehand: `os_pop`.)
    pub fn unregister(&mut self, fd: u64) -> Option<K> {
        let key = self.keys.remove(fd)?;
        let _ = self.backend.remove(fd);
        Some(key)
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

    /// What the OS watches `fd` for, where the mechanism keeps that in user space (select).
    pub fn interest(&self, fd: u64) -> Option<u8> {
        self.backend.interest(fd)
    }

    /// The OS handle (`epoll` fd), when the mechanism has one: an error once closed.
    pub fn fileno(&self) -> Option<Result<crate::backend::RawFd, Error>> {
        self.backend.fileno()
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

/// How a wait with retries ended, when it did not find ready fds.
pub enum WaitFailed<E> {
    /// The system call failed, with something other than EINTR.
    Os(io::Error),
    /// `interrupted` said to stop (a signal handler raised).
    Stopped(E),
}

/// PEP 475 around one wait: `call(wait, timeout)` makes the system call (the binding runs it
/// without the GIL, and may refuse a retry with an error of its own); after EINTR
/// `interrupted()` runs the signal handlers (an error stops the wait), then, unless the time
/// is up, `call` is made again for what is left of `timeout`, with the stdlib's rounding for
/// `poll_like` waits. A call of up to 10 ms runs with the thread's timer slack lowered and
/// put back before anything else runs (`timeout::sharpens`, `SharpTimers`), for what is left
/// of the deadline after those system calls; such a wait first looks, with a zero timeout
/// made here, so that one that finds an fd ready at once makes no more system calls than
/// `select(0)`. `Ok(true)`: the call (or the look) returned (`for_each_ready` has the fds);
/// `Ok(false)`: the time ran out, nothing ready.
pub fn wait_with_retries<W: Wait, E>(
    wait: &mut W,
    timeout: Timeout,
    poll_like: bool,
    mut call: impl FnMut(&mut W, Timeout) -> Result<(), WaitFailed<E>>,
    mut interrupted: impl FnMut() -> Result<(), E>,
) -> Result<bool, WaitFailed<E>> {
    let deadline = Deadline::after(timeout);
    let mut left = timeout;
    // An error of the look's is left for the wait to meet and report.
    if timeout::sharpens(timeout) && wait.wait(Some(Duration::ZERO)).is_ok() && wait.found_any() {
        return Ok(true);
    }
    let mut first = true;
    loop {
        let called = {
            let short = timeout::sharpens(left);
            let _sharp = short.then(SharpTimers::begin).flatten();
            if short {
                // The look and the slack's system calls took some of the wait's time. The
                // stdlib's one call is made all the same (an fd select() refuses, a POLLNVAL,
                // are its answer), with no time left; a retry after EINTR is not.
                left = match deadline.remaining() {
                    Remaining::Left(d) => Some(d),
                    _ if first => Some(Duration::ZERO),
                    _ => return Ok(false),
                };
            }
            first = false;
            call(wait, left)
        };
        match called {
            Ok(()) => return Ok(true),
            Err(WaitFailed::Os(err)) if is_interrupted(&err) => {
                interrupted().map_err(WaitFailed::Stopped)?;
                left = match deadline.remaining() {
                    Remaining::Forever => None,
                    Remaining::Left(d) if poll_like => Some(timeout::poll_like_retry(d)),
                    Remaining::Left(d) => Some(d),
                    Remaining::Expired => return Ok(false),
                };
            }
            Err(err) => return Err(err),
        }
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

    /// A wait that makes no system call (the test's `call` is the wait), counting the looks
    /// the core makes itself, which find fd 7 ready if `ready`.
    #[derive(Default)]
    struct NoWait {
        ready: bool,
        looks: usize,
    }

    impl Wait for NoWait {
        fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
            assert_eq!(
                timeout,
                Some(Duration::ZERO),
                "the core makes only looks itself"
            );
            self.looks += 1;
            Ok(())
        }

        fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8)) {
            if self.ready {
                f(7, READ);
            }
        }
    }

    #[test]
    fn calls_of_up_to_10_ms_run_with_the_slack_lowered_and_handlers_without() {
        use crate::sys::slack_for_tests::{get, set};
        set(77_777);
        let us = Duration::from_micros;
        let mut seen = Vec::new();
        for timeout in [us(500), us(10_000), Duration::ZERO, us(10_001)] {
            let called = wait_with_retries(
                &mut NoWait::default(),
                Some(timeout),
                false,
                |_, _| -> Result<(), WaitFailed<()>> {
                    seen.push(get());
                    Ok(())
                },
                || Ok(()),
            );
            assert!(matches!(called, Ok(true)));
        }
        assert_eq!(seen, [1, 1, 77_777, 77_777]);
        // EINTR: the handlers run with the thread's own slack, the retry with 1 ns again,
        // and a handler that raises leaves the thread's slack as it was.
        let (mut calls, mut in_handlers) = (Vec::new(), Vec::new());
        let stopped = wait_with_retries(
            &mut NoWait::default(),
            Some(us(5_000)),
            true,
            |_, left| -> Result<(), WaitFailed<&str>> {
                calls.push((get(), left));
                Err(WaitFailed::Os(io::Error::from_raw_os_error(libc::EINTR)))
            },
            || {
                in_handlers.push(get());
                if in_handlers.len() == 2 {
                    Err("KeyboardInterrupt")
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(
            stopped,
            Err(WaitFailed::Stopped("KeyboardInterrupt"))
        ));
        assert_eq!(in_handlers, [77_777, 77_777]);
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|&(slack, _)| slack == 1));
        assert!(calls[1].1 < Some(us(5_000)), "the retry waits what is left");
        assert_eq!(get(), 77_777);
        // A wait without end or longer than 10 ms makes no prctl: the slack it sees is the
        // thread's, whatever the switch.
        for timeout in [None, Some(Duration::from_secs(1))] {
            wait_with_retries(
                &mut NoWait::default(),
                timeout,
                true,
                |_, _| -> Result<(), WaitFailed<()>> {
                    assert_eq!(get(), 77_777);
                    Ok(())
                },
                || Ok(()),
            )
            .ok()
            .unwrap();
        }
        set(0);
    }

    #[test]
    fn a_short_wait_that_finds_an_fd_ready_at_once_makes_only_the_look() {
        for (timeout, looks, calls) in [(5_000, 1, 0), (10_001, 0, 1)] {
            let mut wait = NoWait {
                ready: true,
                looks: 0,
            };
            let mut called = 0;
            let waited = wait_with_retries(
                &mut wait,
                Some(Duration::from_micros(timeout)),
                true,
                |_, _| -> Result<(), WaitFailed<()>> {
                    called += 1;
                    Ok(())
                },
                || Ok(()),
            );
            assert!(matches!(waited, Ok(true)));
            assert_eq!((wait.looks, called), (looks, calls), "{timeout} us");
        }
    }
}
