//! The timerfd an Epoll selector keeps beside its epoll fd for sub-millisecond waits (see
//! `epoll.rs`): one wait at a time arms it, and a wait's hold on it lasts until the wait ends.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::sys::syscall;

/// The `epoll_event.u64` of the timerfd's registration: user fds are tagged with their
/// number, a C `int`, so none has this one.
pub const TIMER_TAG: u64 = u64::MAX;

pub struct Timer {
    pub fd: OwnedFd,
    /// Held by the one wait that armed it.
    busy: AtomicBool,
}

impl Timer {
    pub fn new(epfd: RawFd) -> io::Result<Self> {
        let fd = syscall!(timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK
        ))?;
        // SAFETY: timerfd_create just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Edge-triggered: each expiry is reported once, to one wait, and needs no read().
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: TIMER_TAG,
        };
        syscall!(epoll_ctl(
            epfd,
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event
        ))?;
        Ok(Timer::adopt(fd))
    }

    /// Takes the timer if no other wait holds it and arms it for `at`; false leaves the wait
    /// to its own timeout. A holder releases it with `release`, which does not disarm it: a
    /// wait that an fd ended first leaves it armed, since disarming would cost a system call
    /// on every such wake-up, while the expiry left over wakes at most one later wait, once,
    /// which then waits on (any wait may see a timer event that is not its own), and the next
    /// arming discards it.
    /// A timer around `fd`, already in its epoll set, held by no wait.
    pub fn adopt(fd: OwnedFd) -> Self {
        Timer {
            fd,
            busy: AtomicBool::new(false),
        }
    }

    pub fn take(&self, at: libc::timespec) -> bool {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if set_timer(&self.fd, at).is_err() {
            self.release();
            return false;
        }
        true
    }

    pub fn release(&self) {
        self.busy.store(false, Ordering::Release);
    }
}

/// Sets the timerfd `fd` to expire at `at` on CLOCK_MONOTONIC. Its count of expiries goes back
/// to 0, so an expiry not yet reported is not reported.
pub fn set_timer(fd: &OwnedFd, at: libc::timespec) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: at,
    };
    syscall!(timerfd_settime(
        fd.as_raw_fd(),
        libc::TFD_TIMER_ABSTIME,
        &spec,
        std::ptr::null_mut()
    ))?;
    Ok(())
}

/// CLOCK_MONOTONIC (the clock of `Instant`) `d` from now, never earlier.
pub fn monotonic_after(d: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let ns = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
    let secs = d.as_secs().saturating_add(ns / 1_000_000_000);
    libc::timespec {
        tv_sec: now
            .tv_sec
            .saturating_add(libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX)),
        tv_nsec: (ns % 1_000_000_000) as _,
    }
}
