//! Linux `epoll`, level-triggered, as `select.epoll` drives it.
//!
//! Registrations may carry `EPOLLEXCLUSIVE` (issue 23, `exclusive.rs`): asked for with the
//! `EXCLUSIVE` interest bit, or by the exclusive-accept switch for a listening socket watched
//! for reading alone. The kernel refuses `EPOLL_CTL_MOD` of such a registration, so a change
//! of its events deletes and adds it again.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::event_queue::{EventQueue, Mechanism};
use super::handle::OsHandle;
use super::{PollBits, Result};
use crate::exclusive;
use crate::sys::{syscall, to_raw_fd, Probe};
use crate::timeout::{self, to_millis_ceil, Timeout};

/// Whether `epoll_pwait2` (Linux 5.11+) works here, learnt from its first call: a kernel
/// without it says ENOSYS, a seccomp filter that refuses it ENOSYS or EPERM. Once it failed,
/// epoll waits stay with `epoll_wait` and whole milliseconds for the life of the process.
pub static EPOLL_PWAIT2: Probe = Probe::new("missing");

/// The errors by which `epoll_pwait2` is missing rather than failing.
fn epoll_pwait2_missing(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM))
}

/// An epoll selector's backend.
pub type Epoll = EventQueue<EpollCalls>;

/// An interest bit beside `READ` and `WRITE` for `modify`: the registration is to have
/// `EPOLLEXCLUSIVE` from now on, whatever the fd and its events
/// (`EpollSelector.register_exclusive`).
pub const EXCLUSIVE: u8 = 1 << 2;

/// epoll's registration calls and wait, and which registrations carry `EPOLLEXCLUSIVE`.
#[derive(Default)]
pub struct EpollCalls {
    /// The fds registered with `EPOLLEXCLUSIVE` (a listening socket or two). Empty unless
    /// one was made.
    exclusive: Vec<ExclusiveFd>,
}

/// A registration made with `EPOLLEXCLUSIVE`, until it is removed.
#[derive(Clone, Copy)]
struct ExclusiveFd {
    fd: u64,
    /// Asked for (`EXCLUSIVE`): flagged whatever its events. Else made by the switch for a
    /// listening socket: flagged while it is watched for reading alone.
    asked: bool,
    /// Whether the kernel's registration has the flag now.
    flagged: bool,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        let fd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventQueue::with_fd(owned, EpollCalls::default()))
    }
}

fn ctl(epoll: &OsHandle, op: libc::c_int, fd: u64, bits: u32) -> Result<()> {
    // select.epoll converts the fd (OverflowError) before it looks at its own handle.
    let fd = to_raw_fd(fd)?;
    let epfd = epoll.raw()?;
    let mut event = libc::epoll_event {
        events: bits,
        u64: fd as u64,
    };
    syscall!(epoll_ctl(epfd, op, fd, &mut event))?;
    Ok(())
}

const EPOLLEXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;

/// True for a listening socket (`SO_ACCEPTCONN`); false for anything else, or a bad fd.
fn is_listening(fd: RawFd) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` and `len` live across the call, and `len` is `on`'s size.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    got == 0 && on != 0
}

/// Whether this kernel takes `EPOLLEXCLUSIVE` at all: an eventfd registered with it in a new
/// epoll set, both closed after.
fn kernel_takes_exclusive() -> bool {
    let probe = || -> io::Result<()> {
        let ep = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: just created, owned by nothing else.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let efd = syscall!(eventfd(0, libc::EFD_CLOEXEC))?;
        // SAFETY: just created, owned by nothing else.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32 | EPOLLEXCLUSIVE,
            u64: 0,
        };
        let (ep, efd) = (ep.as_raw_fd(), efd.as_raw_fd());
        syscall!(epoll_ctl(ep, libc::EPOLL_CTL_ADD, efd, &mut event))?;
        Ok(())
    };
    probe().is_ok()
}

impl EpollCalls {
    fn exclusive_at(&self, fd: u64) -> Option<usize> {
        self.exclusive.iter().position(|e| e.fd == fd)
    }

    #[cold]
    #[inline(never)]
    fn forget_exclusive(&mut self, fd: u64) {
        if let Some(at) = self.exclusive_at(fd) {
            self.exclusive.swap_remove(at);
        }
    }

    /// The switch's `EPOLL_CTL_ADD`: with `EPOLLEXCLUSIVE` for a listening socket, where the
    /// kernel takes it; else a plain one.
    // Out of the way of the plain registrations' path, which pays one test for it.
    #[cold]
    #[inline(never)]
    fn add_exclusive(&mut self, epoll: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        let bits = epoll_bits(interest);
        if !exclusive::flag_usable() || !to_raw_fd(fd).is_ok_and(is_listening) {
            return ctl(epoll, libc::EPOLL_CTL_ADD, fd, bits);
        }
        if add_flagged(epoll, fd, bits)? {
            let (asked, flagged) = (false, true);
            self.exclusive.push(ExclusiveFd { fd, asked, flagged });
        }
        Ok(())
    }

    /// A change of a registration made exclusive, or one to be made so (`EXCLUSIVE`). The
    /// kernel refuses `EPOLL_CTL_MOD` of a flagged registration and will not add the flag
    /// with one, so then it is deleted and added again. The delete fails where the stdlib's
    /// modify would (EBADF for a closed fd, ENOENT for one not in the set), with the same
    /// error. On any failure the entry goes, as the caller then drops its key.
    #[cold]
    #[inline(never)]
    fn modify_exclusive(&mut self, epoll: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        let asking = interest & EXCLUSIVE != 0;
        let interest = interest & !EXCLUSIVE;
        let bits = epoll_bits(interest);
        let mut entry = match self.exclusive_at(fd) {
            Some(at) => self.exclusive.swap_remove(at),
            None if asking => ExclusiveFd {
                fd,
                asked: true,
                flagged: false,
            },
            None => return ctl(epoll, libc::EPOLL_CTL_MOD, fd, bits),
        };
        entry.asked |= asking;
        let wants_flag = entry.asked || interest == super::READ;
        if !entry.flagged && !wants_flag {
            ctl(epoll, libc::EPOLL_CTL_MOD, fd, bits)?;
        } else {
            ctl(epoll, libc::EPOLL_CTL_DEL, fd, 0)?;
            if wants_flag {
                entry.flagged = add_flagged(epoll, fd, bits)?;
                if !entry.flagged {
                    // The flag was refused: a plain registration from now on.
                    return Ok(());
                }
            } else {
                ctl(epoll, libc::EPOLL_CTL_ADD, fd, bits)?;
                entry.flagged = false;
            }
        }
        self.exclusive.push(entry);
        Ok(())
    }
}

/// `EPOLL_CTL_ADD` with `EPOLLEXCLUSIVE`: true. If the flag is refused (EINVAL: by the kernel
/// or a sandbox, which is then remembered, or for this target, an epoll fd), or was refused
/// before, a plain registration: false.
fn add_flagged(epoll: &OsHandle, fd: u64, bits: u32) -> Result<bool> {
    if exclusive::flag_usable() {
        let flagged = if exclusive::simulated_refusal() {
            Err(io::Error::from_raw_os_error(libc::EINVAL).into())
        } else {
            ctl(epoll, libc::EPOLL_CTL_ADD, fd, bits | EPOLLEXCLUSIVE)
        };
        match flagged {
            Ok(()) => {
                exclusive::flag_works();
                return Ok(true);
            }
            Err(super::Error::Os(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                exclusive::flag_refused(kernel_takes_exclusive);
            }
            Err(e) => return Err(e),
        }
    }
    ctl(epoll, libc::EPOLL_CTL_ADD, fd, bits)?;
    Ok(false)
}

fn epoll_bits(interest: u8) -> u32 {
    PollBits::EPOLL.of_interest(interest) as u32
}

impl Mechanism for EpollCalls {
    type Event = libc::epoll_event;
    const NAME: &'static str = "epoll";

    fn add(&mut self, epoll: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        if exclusive::exclusive_accept() && interest == super::READ {
            return self.add_exclusive(epoll, fd, interest);
        }
        ctl(epoll, libc::EPOLL_CTL_ADD, fd, epoll_bits(interest))
    }

    fn modify(&mut self, epoll: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        if !self.exclusive.is_empty() || interest & EXCLUSIVE != 0 {
            return self.modify_exclusive(epoll, fd, interest);
        }
        ctl(epoll, libc::EPOLL_CTL_MOD, fd, epoll_bits(interest))
    }

    fn remove(&mut self, epoll: &OsHandle, fd: u64) -> Result<()> {
        if !self.exclusive.is_empty() {
            self.forget_exclusive(fd);
        }
        ctl(epoll, libc::EPOLL_CTL_DEL, fd, 0)
    }

    fn wait_raw(
        epfd: RawFd,
        events: &mut [MaybeUninit<libc::epoll_event>],
        timeout: Timeout,
    ) -> io::Result<usize> {
        epoll_wait_timeout(
            epfd,
            events.as_mut_ptr().cast(),
            events.len() as libc::c_int,
            timeout,
        )
    }

    fn ready(event: &libc::epoll_event) -> (u64, u8) {
        let events = PollBits::EPOLL.ready_events(u64::from(event.events));
        (event.u64, events)
    }
}

/// One wait for up to `max_events` events into `events`: `epoll_pwait2` when the timeout
/// has a fraction of a millisecond and the kernel takes it, else `epoll_wait`, whose whole
/// milliseconds round the timeout up.
fn epoll_wait_timeout(
    epfd: RawFd,
    events: *mut libc::epoll_event,
    max_events: libc::c_int,
    timeout: Timeout,
) -> io::Result<usize> {
    if let Some(d) = timeout.filter(|&d| !timeout::whole_millis(d)) {
        let pwait2 = || epoll_pwait2(epfd, events, max_events, d);
        if let Some(result) = EPOLL_PWAIT2.call(epoll_pwait2_missing, pwait2) {
            return result;
        }
    }
    let n = syscall!(epoll_wait(
        epfd,
        events,
        max_events,
        to_millis_ceil(timeout)
    ))?;
    Ok(n as usize)
}

/// `epoll_pwait2(epfd, events, max_events, &timeout, NULL)`, by number: the C library may
/// have no wrapper for it.
fn epoll_pwait2(
    epfd: RawFd,
    events: *mut libc::epoll_event,
    max_events: libc::c_int,
    timeout: Duration,
) -> io::Result<usize> {
    let ts = timeout::to_timespec(timeout);
    let no_sigmask: *const libc::sigset_t = std::ptr::null();
    // SAFETY: `events` has room for `max_events` entries (the caller's buffer), `ts` lives
    // across the call, and a null sigmask leaves the signal mask alone.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            epfd,
            events,
            max_events,
            &ts as *const libc::timespec,
            no_sigmask,
            0usize, // the sigmask's size, unread without one
        )
    };
    if n == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_support::socket_pair;
    use crate::backend::tests::ready;
    use crate::backend::{Backend, Error, Wait, READ, WRITE};
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn a_sub_ms_wait_learns_whether_epoll_pwait2_works() {
        let (_a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        let start = Instant::now();
        assert!(ready(&mut ep, Some(Duration::from_micros(200))).is_empty());
        let took = start.elapsed();
        match EPOLL_PWAIT2.state_name() {
            "works" => assert!(took >= Duration::from_micros(200), "{took:?}"),
            // Without it, epoll_wait's whole milliseconds, rounded up.
            "missing" => assert!(took >= Duration::from_millis(1), "{took:?}"),
            other => panic!("nothing learnt from a sub-millisecond wait: {other}"),
        }
    }

    #[test]
    fn hang_up_counts_as_both() {
        let (a, b) = socket_pair();
        let mut ep = Epoll::new().unwrap();
        ep.add(b.as_raw_fd() as u64, READ).unwrap();
        drop(a);
        let mut wait = ep.begin_wait(8).unwrap();
        wait.wait(None).unwrap();
        let mut out = Vec::new();
        wait.for_each_ready(&mut |fd, ev| out.push((fd, ev)));
        ep.end_wait(wait);
        assert_eq!(out[0].1, READ | WRITE);
    }

    /// The kernel's event mask for `fd` in `ep`'s set, from /proc/self/fdinfo.
    fn kernel_mask(ep: &Epoll, fd: u64) -> Option<u32> {
        let epfd = ep.fileno().unwrap().unwrap();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")).unwrap();
        info.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            let target = (words.next()? == "tfd:").then(|| words.next())??;
            let mask = (words.next()? == "events:").then(|| words.next())??;
            (target.parse::<u64>().ok()? == fd).then(|| u32::from_str_radix(mask, 16).ok())?
        })
    }

    #[test]
    fn an_exclusive_registration_keeps_its_flag_through_changes() {
        let (_a, b) = socket_pair();
        let fd = b.as_raw_fd() as u64;
        let mut ep = Epoll::new().unwrap();
        ep.add(fd, READ).unwrap();
        assert_eq!(kernel_mask(&ep, fd).unwrap() & EPOLLEXCLUSIVE, 0);
        ep.modify(fd, READ | EXCLUSIVE).unwrap();
        // A kernel (or sandbox) that refuses the flag leaves the registration plain, through
        // every change: both outcomes are checked.
        let flag = match exclusive::flag_usable() {
            true => EPOLLEXCLUSIVE,
            false => 0,
        };
        let in_out = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
        for interest in [READ, WRITE, READ | WRITE, 0, READ] {
            ep.modify(fd, interest).unwrap();
            let mask = kernel_mask(&ep, fd).unwrap();
            assert_eq!(
                mask & (in_out | EPOLLEXCLUSIVE),
                epoll_bits(interest) | flag
            );
        }
        ep.remove(fd).unwrap();
        assert_eq!(kernel_mask(&ep, fd), None);
        // Gone from the kernel and from the list: a modify fails as a plain one does.
        match ep.modify(fd, WRITE) {
            Err(Error::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
            other => panic!("expected ENOENT, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_fd_is_ebadf_and_a_huge_one_too_large() {
        let mut ep = Epoll::new().unwrap();
        assert!(matches!(ep.add(1 << 40, READ), Err(Error::FdTooLarge)));
        match ep.add(999_999, WRITE) {
            Err(Error::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("expected EBADF, got {other:?}"),
        }
    }
}
