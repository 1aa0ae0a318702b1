//! Timeouts: the stdlib's rounding rules and the deadline kept across EINTR retries.
//!
//! Every conversion rounds up, so a wait is never shorter than asked (bpo-20311).
//!
//! Poll and Epoll waits keep the timeout to the nanosecond (`ppoll`, `epoll_pwait2`) unless
//! the millisecond switch is on, which restores the stdlib's round-up to whole milliseconds.
//! A backend takes a whole number of milliseconds as the signal to use the millisecond call.
//! Waits of up to 10 ms, of every kind, run with the thread's timer slack lowered
//! (`Timing::sharpens`), unless the switch is on. The switch is read once per `select()`
//! (`Timing`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sys::SharpTimers;

/// How long one wait may block: `None` blocks until an fd is ready.
pub type Timeout = Option<Duration>;

/// Why a timeout in seconds cannot be turned into a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutError {
    /// NaN, infinite, or beyond what the backend's unit can express.
    OutOfRange,
}

const NS_PER_SEC: f64 = 1e9;
/// CPython keeps times as signed 64-bit nanoseconds (`_PyTime_t`).
const PYTIME_MAX_NS: f64 = i64::MAX as f64;

/// Seconds to whole milliseconds the way `PollSelector.select` does:
/// `math.ceil(timeout * 1e3)`, then `poll()` refuses anything above `INT_MAX`.
pub fn poll_millis(secs: f64) -> Result<Duration, TimeoutError> {
    let ms = (secs * 1e3).ceil();
    if !ms.is_finite() || ms > f64::from(i32::MAX) {
        return Err(TimeoutError::OutOfRange);
    }
    poll_wait_millis(ms.max(0.0) as i64)
}

/// The part of `poll_millis` done by `select.poll.poll()` on whole milliseconds.
pub fn poll_wait_millis(ms: i64) -> Result<Duration, TimeoutError> {
    if ms > i64::from(i32::MAX) {
        return Err(TimeoutError::OutOfRange);
    }
    Ok(Duration::from_millis(ms.max(0) as u64))
}

/// Seconds to whole milliseconds the way `EpollSelector.select` does:
/// `math.ceil(timeout * 1e3) * 1e-3` seconds, which `epoll.poll()` turns into nanoseconds and
/// then milliseconds, rounding up each time; the result must fit in an `int` of milliseconds.
pub fn epoll_millis(secs: f64) -> Result<Duration, TimeoutError> {
    epoll_wait_millis((secs * 1e3).ceil() * 1e-3)
}

/// The part of `epoll_millis` done by `select.epoll.poll()`: seconds (already a whole number
/// of milliseconds, give or take float error) to nanoseconds to milliseconds, rounding up.
pub fn epoll_wait_millis(rounded_secs: f64) -> Result<Duration, TimeoutError> {
    let ns = (rounded_secs * NS_PER_SEC).ceil();
    if !ns.is_finite() || ns >= PYTIME_MAX_NS {
        return Err(TimeoutError::OutOfRange);
    }
    let ns = ns.max(0.0) as u64;
    let ms = ns.div_ceil(1_000_000);
    if ms > i32::MAX as u64 {
        return Err(TimeoutError::OutOfRange);
    }
    Ok(Duration::from_millis(ms))
}

/// Seconds to nanoseconds the way `select.select()` does (`_PyTime_FromSecondsObject`,
/// rounding up); the wait itself later rounds up to microseconds.
pub fn select_nanos(secs: f64) -> Result<Duration, TimeoutError> {
    let ns = (secs * NS_PER_SEC).ceil();
    if !ns.is_finite() || !(-PYTIME_MAX_NS..PYTIME_MAX_NS).contains(&ns) {
        return Err(TimeoutError::OutOfRange);
    }
    Ok(Duration::from_nanos(ns.max(0.0) as u64))
}

/// The same for a whole number of seconds.
pub fn select_whole_seconds(secs: i64) -> Result<Duration, TimeoutError> {
    secs.checked_mul(1_000_000_000)
        .map(|ns| Duration::from_nanos(ns.max(0) as u64))
        .ok_or(TimeoutError::OutOfRange)
}

/// True when Poll and Epoll waits round up to whole milliseconds as the stdlib does:
/// `RSELECTORS_MS_TIMEOUTS=1` at import, or `rselectors.set_millisecond_timeouts(True)`.
static MS_TIMEOUTS: AtomicBool = AtomicBool::new(false);

pub fn millisecond_timeouts() -> bool {
    MS_TIMEOUTS.load(Ordering::Relaxed)
}

pub fn set_millisecond_timeouts(on: bool) {
    MS_TIMEOUTS.store(on, Ordering::Relaxed);
}

/// How one `select()` is timed, as the millisecond switch says when the call begins: read
/// once, so that a switch flipped meanwhile never mixes the two ways in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Under the switch: the stdlib's whole milliseconds for Poll and Epoll waits, and the
    /// thread's own timer slack for every wait.
    stdlib_millis: bool,
}

impl Timing {
    /// As the switch says now.
    pub fn now() -> Self {
        Timing {
            stdlib_millis: millisecond_timeouts(),
        }
    }

    /// The wait a Poll or Epoll selector makes for `secs`, given the stdlib's millisecond
    /// wait for it (which already passed the stdlib's range checks): that one under the
    /// switch, else `secs` rounded up to nanoseconds (never more than the stdlib's).
    pub fn poll_like_wait(self, secs: f64, stdlib_ms: Duration) -> Duration {
        if self.stdlib_millis {
            return stdlib_ms;
        }
        select_nanos(secs).map_or(stdlib_ms, |ns| ns.min(stdlib_ms))
    }

    /// What is left of a Poll or Epoll wait after EINTR, as the retry passes it: the stdlib
    /// rounds the remaining time up to milliseconds, and so does the switch.
    pub fn poll_like_retry(self, left: Duration) -> Duration {
        if self.stdlib_millis {
            Duration::from_millis(left.as_nanos().div_ceil(1_000_000) as u64)
        } else {
            left
        }
    }

    /// True when a wait of `timeout` is to run with the lowered slack: short enough, the
    /// switch off (under it, waits are the stdlib's, and the slack is left alone), and an OS
    /// whose slack can be lowered. A look (zero), a long wait and a wait without end are
    /// not.
    pub fn sharpens(self, timeout: Timeout) -> bool {
        match timeout {
            Some(d) => {
                !d.is_zero() && d <= SHARP_UP_TO && !self.stdlib_millis && SharpTimers::available()
            }
            None => false,
        }
    }
}

/// True when a wait of `d` is a whole number of milliseconds: the millisecond call
/// (`poll`, `epoll_wait`) makes it exactly, so it is used.
pub fn whole_millis(d: Duration) -> bool {
    d.subsec_nanos() % 1_000_000 == 0
}

/// A timeout as a `timespec`. A `Duration` is whole nanoseconds, already rounded up from the
/// seconds asked for, so this loses nothing; a wait too long for `time_t` saturates.
pub fn to_timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// Waits this short or shorter are made with the thread's timer slack lowered to 1 ns
/// (`SharpTimers`). The slack (50 us by default) is most of a sub-millisecond wait's lateness
/// and 5% of a 1 ms one; at 10 ms it is 0.5%, and longer waits are not worth four more
/// system calls (a look and three `prctl`; from 50 ms on, the kernel's own margin, a
/// thousandth of the wait, is larger than the slack anyway).
pub const SHARP_UP_TO: Duration = Duration::from_millis(10);

/// A wait's end, fixed before the first system call so EINTR retries wait only what is left.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

/// What is left of a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    Forever,
    Left(Duration),
    Expired,
}

impl Deadline {
    pub fn after(timeout: Timeout) -> Self {
        // A deadline too far to represent is as good as none.
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    pub fn remaining(&self) -> Remaining {
        match self.0 {
            None => Remaining::Forever,
            Some(at) => {
                let now = Instant::now();
                if now > at {
                    Remaining::Expired
                } else {
                    Remaining::Left(at - now)
                }
            }
        }
    }
}

/// A timeout as the `int` milliseconds of `epoll_wait`/`poll`, rounded up; -1 blocks.
pub fn to_millis_ceil(timeout: Timeout) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// A timeout as the seconds and microseconds of `select`'s `timeval`, rounded up to
/// microseconds.
pub fn timeval_parts_ceil(d: Duration) -> (u128, u32) {
    let us = d.as_nanos().div_ceil(1_000);
    (us / 1_000_000, (us % 1_000_000) as u32)
}

/// A timeout as the `timeval` of POSIX `select`, rounded up to microseconds.
#[cfg(unix)]
pub fn to_timeval_ceil(d: Duration) -> libc::timeval {
    let (secs, us) = timeval_parts_ceil(d);
    libc::timeval {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_usec: us as libc::suseconds_t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_rounds_up_to_whole_milliseconds() {
        assert_eq!(poll_millis(0.0001), Ok(Duration::from_millis(1)));
        assert_eq!(poll_millis(0.009), Ok(Duration::from_millis(9)));
        assert_eq!(poll_millis(1.0), Ok(Duration::from_millis(1000)));
        assert_eq!(poll_millis(f64::NAN), Err(TimeoutError::OutOfRange));
        assert_eq!(poll_millis(3e6), Err(TimeoutError::OutOfRange));
    }

    #[test]
    fn epoll_rounds_twice_like_the_stdlib() {
        assert_eq!(epoll_millis(0.0001), Ok(Duration::from_millis(1)));
        assert_eq!(epoll_millis(0.5), Ok(Duration::from_millis(500)));
        // ceil(0.009 * 1e3) * 1e-3 = 0.009000000000000001 s, which rounds up to 10 ms.
        assert_eq!(epoll_millis(0.009), Ok(Duration::from_millis(10)));
        assert_eq!(epoll_millis(0.011), Ok(Duration::from_millis(11)));
        assert!(epoll_millis(f64::INFINITY).is_err());
        assert!(epoll_millis(1e10).is_err());
    }

    #[test]
    fn select_rounds_up_to_microseconds() {
        let tv = timeval_parts_ceil(select_nanos(1.0000001).unwrap());
        assert_eq!(tv, (1, 1));
        assert!(select_nanos(1e10).is_err());
        assert!(select_whole_seconds(10_000_000_000).is_err());
        assert_eq!(select_whole_seconds(2), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn millis_round_up_and_saturate() {
        assert_eq!(to_millis_ceil(None), -1);
        assert_eq!(to_millis_ceil(Some(Duration::from_nanos(1))), 1);
        assert_eq!(
            to_millis_ceil(Some(Duration::from_secs(u32::MAX as u64 * 1000))),
            i32::MAX
        );
    }

    #[test]
    fn poll_like_waits_keep_nanoseconds_unless_switched() {
        let (precise, stdlib_millis) = (
            Timing {
                stdlib_millis: false,
            },
            Timing {
                stdlib_millis: true,
            },
        );
        let stdlib = poll_millis(0.0002).unwrap();
        assert_eq!(stdlib, Duration::from_millis(1));
        assert_eq!(
            precise.poll_like_wait(0.0002, stdlib),
            Duration::from_micros(200)
        );
        assert_eq!(stdlib_millis.poll_like_wait(0.0002, stdlib), stdlib);
        // Never longer than the stdlib's wait, so a whole millisecond stays whole.
        assert_eq!(
            precise.poll_like_wait(0.001, poll_millis(0.001).unwrap()),
            Duration::from_millis(1)
        );
        assert!(whole_millis(Duration::from_millis(3)) && !whole_millis(Duration::from_nanos(1)));
        let ts = to_timespec(Duration::new(2, 5));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (2, 5));
        assert_eq!(
            precise.poll_like_retry(Duration::from_nanos(1)),
            Duration::from_nanos(1)
        );
        assert_eq!(
            stdlib_millis.poll_like_retry(Duration::from_nanos(1)),
            Duration::from_millis(1)
        );
        assert!(!stdlib_millis.sharpens(Some(Duration::from_micros(500))));
    }

    #[test]
    fn deadline_counts_down() {
        assert_eq!(Deadline::after(None).remaining(), Remaining::Forever);
        let d = Deadline::after(Some(Duration::from_secs(60)));
        assert!(matches!(d.remaining(), Remaining::Left(left) if left <= Duration::from_secs(60)));
        let past = Deadline::after(Some(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(past.remaining(), Remaining::Expired);
    }
}
