//! The backend tests, written once over `Backend` and run for every mechanism the build has
//! (kqueue too, on macOS and the BSDs, or on Linux with the `libkqueue` feature).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::test_support::{raw, socket_pair};
use super::{Backend, Error, Wait, READ, WRITE};
use crate::timeout::Timeout;

/// fd -> the events a wait reported for it, merged: kqueue reports one event per filter.
pub(super) type Ready = BTreeMap<u64, u8>;

fn merge(into: &mut Ready) -> impl FnMut(u64, u8) + '_ {
    |fd, events| *into.entry(fd).or_default() |= events
}

pub(super) fn ready<B: Backend>(backend: &mut B, timeout: Timeout) -> Ready {
    let mut wait = backend.begin_wait(8).unwrap();
    wait.wait(timeout).unwrap();
    let mut out = Ready::new();
    wait.for_each_ready(&mut merge(&mut out));
    backend.end_wait(wait);
    out
}

fn now<B: Backend>(backend: &mut B) -> Result<Ready, Error> {
    let mut out = Ready::new();
    backend.poll_now(8, &mut merge(&mut out))?;
    Ok(out)
}

fn reports_readable_and_writable<B: Backend>(mut backend: B) {
    let (mut a, b) = socket_pair();
    let bfd = raw(&b);
    backend.add(bfd, READ).unwrap();
    assert!(ready(&mut backend, Some(Duration::ZERO)).is_empty());
    a.write_all(b"x").unwrap();
    assert_eq!(
        ready(&mut backend, Some(Duration::ZERO)),
        [(bfd, READ)].into()
    );
    backend.modify(bfd, READ | WRITE).unwrap();
    assert_eq!(ready(&mut backend, None), [(bfd, READ | WRITE)].into());
    backend.remove(bfd).unwrap();
    // Something left to watch: Winsock's select() refuses three empty sets (WSAEINVAL).
    backend.add(raw(&a), READ).unwrap();
    assert!(ready(&mut backend, Some(Duration::from_millis(1))).is_empty());
}

fn poll_now_reports_what_a_wait_reports<B: Backend>(mut backend: B) {
    let (mut a, b) = socket_pair();
    let bfd = raw(&b);
    backend.add(bfd, READ | WRITE).unwrap();
    assert_eq!(now(&mut backend).unwrap(), [(bfd, WRITE)].into());
    a.write_all(b"x").unwrap();
    assert_eq!(
        now(&mut backend).unwrap(),
        ready(&mut backend, Some(Duration::ZERO))
    );
    assert_eq!(now(&mut backend).unwrap(), [(bfd, READ | WRITE)].into());
}

/// For the mechanisms with an OS handle (epoll, kqueue): after close() everything says so,
/// and a wait begun before still owns the fd, and can tell it was closed.
#[cfg(any(epoll, kqueue))]
fn a_closed_handle_is_refused_but_outlives_its_waits<B: Backend>(mut backend: B) {
    assert!(matches!(backend.fileno(), Some(Ok(_))));
    let wait = backend.begin_wait(1).unwrap();
    assert!(!wait.handle_closed());
    backend.close();
    assert!(matches!(backend.add(0, READ), Err(Error::Closed(_))));
    assert!(matches!(backend.fileno(), Some(Err(Error::Closed(_)))));
    assert!(matches!(now(&mut backend), Err(Error::Closed(_))));
    assert!(matches!(backend.begin_wait(1), Err(Error::Closed(_))));
    assert!(wait.handle_closed());
    let mut wait = wait;
    wait.wait(Some(Duration::ZERO)).unwrap();
    backend.end_wait(wait);
}

/// For the mechanisms that keep their registrations in user space (poll, select): no OS
/// handle, and close() leaves the registrations, as the stdlib's does.
fn without_a_handle_close_keeps_the_registrations<B: Backend>(mut backend: B) {
    let (_a, b) = socket_pair();
    backend.add(raw(&b), WRITE).unwrap();
    assert!(backend.fileno().is_none());
    backend.close();
    assert_eq!(now(&mut backend).unwrap(), [(raw(&b), WRITE)].into());
}

/// An fd that is no C `int` is refused: by the registration (kqueue: by the kernel, as the
/// stdlib's `kevent` passes any `uintptr_t`), or (select, which keeps its fds in user space)
/// by the next wait.
fn a_huge_fd_is_refused<B: Backend>(mut backend: B) {
    match backend.add(1 << 40, READ) {
        Err(err) => assert!(matches!(err, Error::FdTooLarge | Error::Os(_)), "{err:?}"),
        Ok(()) => assert!(matches!(
            backend.begin_wait(1).map(drop),
            Err(Error::FdTooLarge | Error::FdOutOfRange)
        )),
    }
}

/// polling's tests/precision.rs: a wait with nothing ready lasts at least what was asked, for
/// timeouts below, at and above a millisecond (sub-millisecond ones are kept, #14).
fn a_wait_never_returns_early<B: Backend>(mut backend: B) {
    let (_a, b) = socket_pair();
    backend.add(raw(&b), READ).unwrap();
    for us in [1, 10, 50, 300, 1500] {
        let asked = Duration::from_micros(us);
        let start = std::time::Instant::now();
        assert!(ready(&mut backend, Some(asked)).is_empty());
        assert!(start.elapsed() >= asked, "{us} us: {:?}", start.elapsed());
    }
}

/// Two fds ready and room asked for one (a forked child's registration in a shared epoll set
/// counts for the kernel but not for the selector), after sub-millisecond waits: the waits
/// that follow report each of them, neither starves behind the other.
fn a_ready_fd_is_not_starved_when_more_are_ready_than_asked<B: Backend>(mut backend: B) {
    let (mut a, b) = socket_pair();
    let (mut c, d) = socket_pair();
    let (bfd, dfd) = (raw(&b), raw(&d));
    backend.add(bfd, READ).unwrap();
    backend.add(dfd, READ).unwrap();
    for _ in 0..3 {
        assert!(ready(&mut backend, Some(Duration::from_micros(200))).is_empty());
    }
    a.write_all(b"x").unwrap();
    c.write_all(b"x").unwrap();
    let mut seen = Ready::new();
    for timeout in [Some(Duration::ZERO), Some(Duration::from_micros(200)), None] {
        let mut wait = backend.begin_wait(1).unwrap();
        wait.wait(timeout).unwrap();
        wait.for_each_ready(&mut merge(&mut seen));
        backend.end_wait(wait);
        backend.poll_now(1, &mut merge(&mut seen)).unwrap();
    }
    assert_eq!(seen, [(bfd, READ), (dfd, READ)].into());
}

/// Instantiates every test above for one backend, and those of its kind: `handle` (epoll,
/// kqueue) or `user_space` (poll, select).
macro_rules! backend_tests {
    ($name:ident, $make:expr, $kind:ident) => {
        mod $name {
            backend_tests!(@$kind $make);

            #[test]
            fn reports_readable_and_writable() {
                super::reports_readable_and_writable($make);
            }

            #[test]
            fn poll_now_reports_what_a_wait_reports() {
                super::poll_now_reports_what_a_wait_reports($make);
            }

            #[test]
            fn a_huge_fd_is_refused() {
                super::a_huge_fd_is_refused($make);
            }

            #[test]
            fn a_wait_never_returns_early() {
                super::a_wait_never_returns_early($make);
            }

            #[test]
            fn a_ready_fd_is_not_starved_when_more_are_ready_than_asked() {
                super::a_ready_fd_is_not_starved_when_more_are_ready_than_asked($make);
            }
        }
    };
    (@handle $make:expr) => {
        #[test]
        fn a_closed_handle_is_refused_but_outlives_its_waits() {
            super::a_closed_handle_is_refused_but_outlives_its_waits($make);
        }
    };
    (@user_space $make:expr) => {
        #[test]
        fn without_a_handle_close_keeps_the_registrations() {
            super::without_a_handle_close_keeps_the_registrations($make);
        }
    };
}

#[cfg(epoll)]
backend_tests!(epoll, crate::backend::epoll::Epoll::new().unwrap(), handle);
#[cfg(kqueue)]
backend_tests!(
    kqueue,
    crate::backend::kqueue::Kqueue::new().unwrap(),
    handle
);
#[cfg(unix)]
backend_tests!(poll, crate::backend::poll::Poll::new(), user_space);
backend_tests!(select, crate::backend::select::Select::new(), user_space);
