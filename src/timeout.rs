//! Timeouts: the stdlib's rounding rules and the deadline kept across EINTR retries.
//!
//! Every conversion rounds up, so a wait is never shorter than asked (bpo-20311).

use std::time::{Duration, Instant};

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

/// A timeout as the `timeval` of `select`, rounded up to microseconds.
pub fn to_timeval_ceil(d: Duration) -> libc::timeval {
    let us = d.as_nanos().div_ceil(1_000);
    let secs = us / 1_000_000;
    libc::timeval {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_usec: (us % 1_000_000) as libc::suseconds_t,
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
        let tv = to_timeval_ceil(select_nanos(1.0000001).unwrap());
        assert_eq!((tv.tv_sec, tv.tv_usec), (1, 1));
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
    fn deadline_counts_down() {
        assert_eq!(Deadline::after(None).remaining(), Remaining::Forever);
        let d = Deadline::after(Some(Duration::from_secs(60)));
        assert!(matches!(d.remaining(), Remaining::Left(left) if left <= Duration::from_secs(60)));
        let past = Deadline::after(Some(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(past.remaining(), Remaining::Expired);
    }
}
