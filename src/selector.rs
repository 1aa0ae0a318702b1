//! What every selector does over any backend: the fd -> key table kept in step with the OS
//! registrations, with the stdlib's rules for failures. Knows nothing of Python; `K` is
//! whatever the binding stores per registration.

use std::io;
use std::time::Duration;

use crate::backend::{Backend, Error, Wait};
use crate::sys::{is_interrupted, SharpTimers};
use crate::table::KeyTable;
use crate::timeout::{Deadline, Remaining, Timeout, Timing};

pub struct Selector<B, K> {
    keys: KeyTable<K>,
    backend: B,
}

/// The stdlib's `register`, `modify` and `unregister` are steps with user code between them
/// (`events & EVENT_READ`, `fileno()` again, `__eq__`): the binding calls the steps in the
/// stdlib's order and runs that code between them, without the selector's lock.
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

    /// Removes the key and the OS registration: the key, and whether the OS let go of a
    /// registration it held. It may have forgotten the fd already (it was closed), which the
    /// stdlib ignores for epoll and kqueue; `select.poll` raises KeyError for an fd it does
    /// not hold (a callback took it between the key and the OS step), which the binding
    /// raises (`os_refused`).
    pub fn unregister(&mut self, fd: u64) -> Option<(K, bool)> {
        let key = self.keys.remove(fd)?;
        let held = self.backend.remove(fd).is_ok();
        Some((key, held))
    }

    /// Stops watching `fd` for `events` and keeps the rest (SelectSelector's discard from
    /// one of its sets, which cannot fail).
    pub fn unwatch(&mut self, fd: u64, events: u8) {
        let left = self.backend.interest(fd).unwrap_or(0) & !events;
        let _ = self.backend.modify(fd, left);
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

    /// Ends a wait begun by `begin_wait`: `every` gets each fd it found ready and `keyed`
    /// each of those that has a key, with it (`found`: the wait returned ready fds), then
    /// the backend takes back what it lent.
    pub fn end_wait(
        &mut self,
        wait: B::Wait,
        found: bool,
        every: impl FnMut(u64, u8),
        keyed: impl FnMut(u64, &K, u8),
    ) {
        if found {
            wait.for_each_ready(with_keys(&self.keys, every, keyed));
        }
        self.backend.end_wait(wait);
    }

    /// A zero-timeout wait made in one go, under the caller's hold of the selector: `every`
    /// gets each fd found ready, `keyed` each of those that has a key.
    pub fn poll_now(
        &mut self,
        every: impl FnMut(u64, u8),
        keyed: impl FnMut(u64, &K, u8),
    ) -> Result<Look, Error> {
        let max_events = self.keys.len().max(1);
        match self
            .backend
            .poll_now(max_events, with_keys(&self.keys, every, keyed))
        {
            Ok(()) => Ok(Look::Done),
            // PEP 475 with a zero timeout: the stdlib runs the signal handlers, then retries
            // with what is left of zero, which is nothing.
            Err(Error::Os(err)) if is_interrupted(&err) => Ok(Look::Interrupted),
            Err(err) => Err(err),
        }
    }

    /// `keyed` gets each of the `ready` fds (found by a replaced `_selector_cls`) that has a
    /// key, with it.
    pub fn keyed(
        &self,
        ready: impl IntoIterator<Item = (u64, u8)>,
        keyed: impl FnMut(u64, &K, u8),
    ) {
        let mut report = with_keys(&self.keys, |_, _| {}, keyed);
        for (fd, events) in ready {
            report(fd, events);
        }
    }
}

/// What a look (`Selector::poll_now`) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The ready fds were reported.
    Done,
    /// EINTR: nothing is ready, once the caller has run the signal handlers (after letting
    /// go of the selector: they are Python code).
    Interrupted,
}

/// Matches a ready fd to its key: `every(fd, events)` for each, then `keyed(fd, key,
/// events)` for those that have one.
fn with_keys<'a, K>(
    keys: &'a KeyTable<K>,
    mut every: impl FnMut(u64, u8) + 'a,
    mut keyed: impl FnMut(u64, &K, u8) + 'a,
) -> impl FnMut(u64, u8) + 'a {
    move |fd, events| {
        every(fd, events);
        if let Some(key) = keys.get(fd) {
            keyed(fd, key, events);
        }
    }
}

/// How a wait with retries ended, when it did not find ready fds.
pub enum WaitFailed<E> {
    /// The system call failed, with something other than EINTR (or EBADF for a handle
    /// closed before a retry).
    Os(io::Error),
    /// `interrupted` said to stop (a signal handler raised).
    Stopped(E),
}

/// PEP 475 around one wait, as the stdlib's C waits retry: `call(wait, timeout)` makes the
/// system call (the binding runs it without the GIL); after EINTR `interrupted()` runs the
/// signal handlers (an error stops the wait), then, unless the time is up, `call` is made
/// again for what is left of `timeout`, rounded up to milliseconds where `retry_in_millis`
/// (`Timing::poll_like_retry`). The retry is on the selector's own handle, as the stdlib's:
/// if a handler closed it (a SIGTERM handler calling close()), the retry fails with EBADF,
/// though this wait still holds the fd open. A call of up to 10 ms runs with the thread's
/// timer slack lowered and put back before anything else runs (`Timing::sharpens`,
/// `SharpTimers`), for what is left of the deadline after those system calls; such a wait
/// first looks, with a zero timeout made here, so that one that finds an fd ready at once
/// makes no more system calls than `select(0)`. `Ok(true)`: the call (or the look) returned
/// (`end_wait` reports the fds); `Ok(false)`: the time ran out, nothing ready.
pub fn wait_with_retries<W: Wait, E>(
    wait: &mut W,
    timeout: Timeout,
    timing: Timing,
    retry_in_millis: bool,
    mut call: impl FnMut(&mut W, Timeout) -> io::Result<()>,
    mut interrupted: impl FnMut() -> Result<(), E>,
) -> Result<bool, WaitFailed<E>> {
    let deadline = Deadline::after(timeout);
    let mut left = timeout;
    // An error of the look's is left for the wait to meet and report.
    if timing.sharpens(timeout) && wait.wait(Some(Duration::ZERO)).is_ok() && wait.found_any() {
        return Ok(true);
    }
    let mut first = true;
    loop {
        let called = {
            let short = timing.sharpens(left);
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
            if !first && wait.handle_closed() {
                let ebadf = io::Error::from_raw_os_error(libc::EBADF);
                return Err(WaitFailed::Os(ebadf));
            }
            first = false;
            call(wait, left)
        };
        match called {
            Ok(()) => return Ok(true),
            Err(err) if is_interrupted(&err) => {
                interrupted().map_err(WaitFailed::Stopped)?;
                left = match deadline.remaining() {
                    Remaining::Forever => None,
                    Remaining::Left(d) if retry_in_millis => Some(timing.poll_like_retry(d)),
                    Remaining::Left(d) => Some(d),
                    Remaining::Expired => return Ok(false),
                };
            }
            Err(err) => return Err(WaitFailed::Os(err)),
        }
    }
}

#[cfg(all(test, epoll))]
mod tests {
    use super::*;
    use crate::backend::epoll::Epoll;
    use crate::backend::poll::Poll;
    use crate::backend::test_support::socket_pair;
    use crate::backend::{Wait, READ, WRITE};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// `register` as the binding makes it: the key, then the OS registration; a refusal
    /// takes the key back (the binding finds it again through `fileno()`).
    fn register<B: Backend, K>(
        sel: &mut Selector<B, K>,
        fd: u64,
        interest: u8,
        key: K,
    ) -> Result<(), Error> {
        if sel.insert_key(fd, key).is_err() {
            panic!("fd {fd} is registered already");
        }
        sel.watch(fd, interest).inspect_err(|_| {
            sel.undo(fd).expect("just inserted");
        })
    }

    #[test]
    fn a_refused_registration_leaves_no_key() {
        let mut sel = Selector::new(Epoll::new().unwrap());
        assert!(matches!(
            register(&mut sel, 999_999, READ, "k"),
            Err(Error::Os(_))
        ));
        assert!(sel.keys().is_empty());
    }

    #[test]
    fn a_second_key_for_one_fd_comes_back() {
        let (_a, b) = socket_pair();
        let fd = b.as_raw_fd() as u64;
        let mut sel = Selector::new(Epoll::new().unwrap());
        register(&mut sel, fd, READ, "k").unwrap();
        assert_eq!(sel.insert_key(fd, "again"), Err("again"));
        assert_eq!(sel.keys().get(fd), Some(&"k"));
    }

    #[test]
    fn a_refused_modify_keeps_the_key_for_the_binding_to_drop() {
        let (a, b) = socket_pair();
        let fd = b.as_raw_fd() as u64;
        let mut sel = Selector::new(Epoll::new().unwrap());
        register(&mut sel, fd, READ, "k").unwrap();
        drop(b);
        let err = sel.modify_interest(fd, WRITE).unwrap_err();
        assert!(matches!(err, Error::Os(_)));
        assert_eq!(sel.keys().len(), 1, "the binding drops the key");
        assert_eq!(sel.undo(fd), Some("k"));
        // Unregistering an fd the OS no longer knows still hands the key back.
        let afd = a.as_raw_fd() as u64;
        register(&mut sel, afd, READ, "a").unwrap();
        drop(a);
        assert_eq!(sel.unregister(afd), Some(("a", false)), "the OS forgot it");
        assert_eq!(sel.unregister(afd), None);
    }

    #[test]
    fn store_key_replaces_in_place_or_adds_back() {
        let (_a, b) = socket_pair();
        let fd = b.as_raw_fd() as u64;
        let mut sel = Selector::new(Epoll::new().unwrap());
        register(&mut sel, fd, READ, "old").unwrap();
        assert_eq!(sel.store_key(fd, "new"), Some("old"));
        assert_eq!(sel.unregister(fd), Some(("new", true)));
        // A callback unregistered it meanwhile: stored back, as a dict store does.
        assert_eq!(sel.store_key(fd, "back"), None);
        assert_eq!(sel.keys().get(fd), Some(&"back"));
    }

    #[test]
    fn waits_report_ready_fds_with_their_keys_and_close_hands_back_every_key() {
        let (a, _b) = socket_pair();
        let (c, _d) = socket_pair();
        let (afd, cfd) = (a.as_raw_fd() as u64, c.as_raw_fd() as u64);
        // poll() reports every fd it holds, whatever the number of keys.
        let mut sel = Selector::new(Poll::new());
        register(&mut sel, afd, WRITE, 1).unwrap();
        register(&mut sel, cfd, WRITE, 2).unwrap();
        // An fd watched by the OS whose key a callback took: reported, but with no key.
        sel.undo(cfd);
        let (mut every, mut keyed) = (Vec::new(), Vec::new());
        let looked = sel.poll_now(|fd, _| every.push(fd), |fd, k, ev| keyed.push((fd, *k, ev)));
        assert_eq!(looked.unwrap(), Look::Done);
        every.sort();
        assert_eq!(every, {
            let mut both = vec![afd, cfd];
            both.sort();
            both
        });
        assert_eq!(keyed, vec![(afd, 1, WRITE)]);

        let mut wait = sel.begin_wait().unwrap();
        wait.wait(Some(Duration::ZERO)).unwrap();
        let mut seen = Vec::new();
        sel.end_wait(wait, true, |_, _| {}, |fd, k, ev| seen.push((fd, *k, ev)));
        assert_eq!(seen, vec![(afd, 1, WRITE)]);
        let wait = sel.begin_wait().unwrap();
        sel.end_wait(wait, false, |_, _| panic!("not found"), |_, _, _| panic!());

        sel.keyed([(cfd, READ), (afd, READ)], |fd, k, ev| {
            assert_eq!((fd, *k, ev), (afd, 1, READ))
        });
        assert_eq!(sel.close().len(), 1);
        assert!(sel.keys().is_empty());
    }

    /// A wait that makes no system call (the test's `call` is the wait), counting the looks
    /// the core makes itself, which find fd 7 ready if `ready`.
    #[derive(Default)]
    struct NoWait {
        ready: bool,
        looks: usize,
        closed: bool,
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

        fn for_each_ready(&self, mut f: impl FnMut(u64, u8)) {
            if self.ready {
                f(7, READ);
            }
        }

        fn handle_closed(&self) -> bool {
            self.closed
        }
    }

    fn eintr() -> io::Error {
        io::Error::from_raw_os_error(libc::EINTR)
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
                Timing::now(),
                false,
                |_, _| {
                    seen.push(get());
                    Ok(())
                },
                || Ok::<(), ()>(()),
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
            Timing::now(),
            true,
            |_, left| {
                calls.push((get(), left));
                Err(eintr())
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
                Timing::now(),
                true,
                |_, _| {
                    assert_eq!(get(), 77_777);
                    Ok(())
                },
                || Ok::<(), ()>(()),
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
                ..NoWait::default()
            };
            let mut called = 0;
            let waited = wait_with_retries(
                &mut wait,
                Some(Duration::from_micros(timeout)),
                Timing::now(),
                true,
                |_, _| {
                    called += 1;
                    Ok(())
                },
                || Ok::<(), ()>(()),
            );
            assert!(matches!(waited, Ok(true)));
            assert_eq!((wait.looks, called), (looks, calls), "{timeout} us");
        }
    }

    #[test]
    fn a_retry_after_a_handler_closed_the_handle_fails_with_ebadf() {
        let mut wait = NoWait::default();
        let mut calls = 0;
        let waited = wait_with_retries(
            &mut wait,
            None,
            Timing::now(),
            false,
            |wait, _| {
                calls += 1;
                // The signal handler, run after this EINTR, closes the selector.
                wait.closed = true;
                Err(eintr())
            },
            || Ok::<(), ()>(()),
        );
        match waited {
            Err(WaitFailed::Os(err)) => assert_eq!(err.raw_os_error(), Some(libc::EBADF)),
            _ => panic!("expected EBADF"),
        }
        assert_eq!(calls, 1, "no second system call");
    }

    #[test]
    fn an_interrupted_look_reports_nothing() {
        struct Interrupted;
        impl Backend for Interrupted {
            type Wait = NoWait;
            fn add(&mut self, _: u64, _: u8) -> Result<(), Error> {
                Ok(())
            }
            fn modify(&mut self, _: u64, _: u8) -> Result<(), Error> {
                Ok(())
            }
            fn remove(&mut self, _: u64) -> Result<(), Error> {
                Ok(())
            }
            fn begin_wait(&mut self, _: usize) -> Result<NoWait, Error> {
                Ok(NoWait::default())
            }
            fn end_wait(&mut self, _: NoWait) {}
            fn poll_now(&mut self, _: usize, _: impl FnMut(u64, u8)) -> Result<(), Error> {
                Err(Error::Os(eintr()))
            }
            fn close(&mut self) {}
        }
        let mut sel = Selector::new(Interrupted);
        sel.insert_key(7, ()).unwrap();
        let looked = sel.poll_now(|_, _| panic!("nothing"), |_, _, _| panic!("nothing"));
        assert_eq!(looked.unwrap(), Look::Interrupted);
    }
}
