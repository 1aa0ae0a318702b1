//! What the core needs of the OS beyond one mechanism: the `syscall!` macro (a `-1` return
//! into `io::Error`; POSIX), fd conversion, error text as CPython words it (`strerror` on
//! POSIX, `FormatMessageW` on Windows), EINTR, a counter of `fork()`s (POSIX), system calls
//! that may be missing (`Probe`), and the thread's timer slack lowered for a wait (Linux).

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU8, Ordering};

/// Calls a libc function (or `module::function` of another C library) and turns a `-1`
/// return into the thread's `errno`.
#[cfg(unix)]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {
        $crate::sys::syscall!(libc::$fn($($arg),*))
    };
    ($module:ident :: $fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller passes arguments valid for this system call.
        let res = unsafe { $module::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
#[cfg(unix)]
pub(crate) use syscall;

/// Converts a file descriptor number to the `c_int` the kernel takes.
///
/// Python's own `select` module raises `OverflowError("Python int too large to convert to
/// C int")` here; the core reports it as a typed error so the binding can do the same.
pub fn to_raw_fd(fd: u64) -> Result<libc::c_int, FdTooLarge> {
    libc::c_int::try_from(fd).map_err(|_| FdTooLarge)
}

/// An fd number that does not fit in a C `int`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdTooLarge;

/// True when the error is EINTR: the wait must be retried with the remaining time.
pub fn is_interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// The C library's message for an errno, as `OSError.strerror` carries it.
#[cfg(unix)]
pub fn strerror(errno: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: the buffer is writable for its whole length; strerror_r NUL-terminates it.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("Unknown error {errno}");
    }
    // SAFETY: strerror_r succeeded, so the buffer holds a NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    text.to_string_lossy().into_owned()
}

/// The system's message for a Windows (or Winsock) error code, as
/// `PyErr_SetExcFromWindowsErr` words it for `OSError.strerror`: `FormatMessageW` in the
/// default language, trailing white space and dots removed, "Windows Error 0x.." without one.
#[cfg(windows)]
pub fn windows_error_message(code: i32) -> String {
    use windows_sys::Win32::System::Diagnostics::Debug::{
        FormatMessageW, FORMAT_MESSAGE_FROM_SYSTEM, FORMAT_MESSAGE_IGNORE_INSERTS,
    };
    // MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), as CPython asks.
    const LANG_NEUTRAL_SUBLANG_DEFAULT: u32 = 0x0400;
    let mut buf = [0u16; 512];
    // SAFETY: the buffer is writable for `buf.len()` UTF-16 units; no inserts are read.
    let len = unsafe {
        FormatMessageW(
            FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
            std::ptr::null(),
            code as u32,
            LANG_NEUTRAL_SUBLANG_DEFAULT,
            buf.as_mut_ptr(),
            buf.len() as u32,
            std::ptr::null(),
        )
    };
    let mut text = &buf[..(len as usize).min(buf.len())];
    while let Some((&last, rest)) = text.split_last() {
        if last > u16::from(b' ') && last != u16::from(b'.') {
            break;
        }
        text = rest;
    }
    if len == 0 {
        return format!("Windows Error 0x{:x}", code as u32);
    }
    String::from_utf16_lossy(text)
}

#[cfg(unix)]
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(unix)]
extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many times this process is a `fork()` away from the one that first asked: lets a
/// handle tell waits of its own process from those of threads a fork left behind.
#[cfg(unix)]
pub fn fork_generation() -> u64 {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is fork-safe.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether a system call that a kernel may lack, or a seccomp filter refuse, works here:
/// learnt from its first calls and, once refused, never tried again for the life of the
/// process. A test hook makes the calls fail with an errno of the test's choosing.
pub struct Probe {
    state: AtomicU8,
    /// What `state_name` calls the refused state ("missing", "refused").
    refused_name: &'static str,
    /// Test hook: a nonzero errno that the call is made to fail with instead of running, and
    /// how many calls failed so (a test can tell one detection from one per wait).
    simulated_errno: AtomicI32,
    simulated_failures: AtomicU32,
}

const PROBE_UNKNOWN: u8 = 0;
const PROBE_WORKS: u8 = 1;
const PROBE_REFUSED: u8 = 2;

impl Probe {
    pub const fn new(refused_name: &'static str) -> Self {
        Probe {
            state: AtomicU8::new(PROBE_UNKNOWN),
            refused_name,
            simulated_errno: AtomicI32::new(0),
            simulated_failures: AtomicU32::new(0),
        }
    }

    /// Makes the call `f` and learns from it: `None` when it is refused, now (an error that
    /// `refusal` accepts) or before (then `f` is not called); otherwise its result, an error
    /// that says nothing about support (EINTR) included.
    pub fn call<T>(
        &self,
        refusal: fn(&io::Error) -> bool,
        f: impl FnOnce() -> io::Result<T>,
    ) -> Option<io::Result<T>> {
        if self.refused() {
            return None;
        }
        let result = match self.simulated_errno.load(Ordering::Relaxed) {
            0 => f(),
            errno => {
                self.simulated_failures.fetch_add(1, Ordering::Relaxed);
                Err(io::Error::from_raw_os_error(errno))
            }
        };
        let learnt = match &result {
            Ok(_) => PROBE_WORKS,
            Err(err) if refusal(err) => PROBE_REFUSED,
            Err(_) => return Some(result),
        };
        // Stored only when it changes: the waits of every thread read it.
        if self.state.load(Ordering::Relaxed) != learnt {
            self.state.store(learnt, Ordering::Relaxed);
        }
        (learnt == PROBE_WORKS).then_some(result)
    }

    /// True once the call was refused.
    pub fn refused(&self) -> bool {
        self.state.load(Ordering::Relaxed) == PROBE_REFUSED
    }

    /// `"unknown"`, `"works"` or the refused state's name: what the calls so far found.
    pub fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            PROBE_WORKS => "works",
            PROBE_REFUSED => self.refused_name,
            _ => "unknown",
        }
    }

    /// How many calls the test hook failed since it was last set.
    pub fn simulated_failures(&self) -> u32 {
        self.simulated_failures.load(Ordering::Relaxed)
    }

    /// Test hook: forgets what was learnt, and makes the next calls fail with `errno` (0: make
    /// them for real), to exercise the fallback where the call works.
    pub fn simulate_errno(&self, errno: i32) {
        self.simulated_errno.store(errno, Ordering::Relaxed);
        self.simulated_failures.store(0, Ordering::Relaxed);
        self.state.store(PROBE_UNKNOWN, Ordering::Relaxed);
    }
}

/// `prctl(PR_SET_TIMERSLACK)` and `PR_GET_TIMERSLACK`, refused by nothing but a seccomp
/// filter (any errno it chose): once refused, waits go on with the thread's own slack.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub static TIMER_SLACK: Probe = Probe::new("refused");

/// The calling thread's timer slack at 1 ns while this lives, put back as it was when it is
/// dropped (Linux). The kernel lets a sleep end up to the thread's slack late, to batch
/// wake-ups: 50 us by default, most of what a short wait is late by. The slack is the
/// thread's own, and only the waiting thread runs between `begin` and the drop.
pub struct SharpTimers {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    previous: libc::c_ulong,
}

impl SharpTimers {
    /// Lowers the slack, or gives `None`: the slack is 1 ns or 0 already (a real-time
    /// thread's, on kernels that keep it at 0 and ignore a new one), prctl is refused, or the
    /// OS has no slack to lower.
    /// The slack is read each time rather than cached: the program may change it between two
    /// waits, and a value cached would then be put back in place of its own.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn begin() -> Option<SharpTimers> {
        let any_error = |_: &io::Error| true;
        let previous = TIMER_SLACK.call(any_error, || prctl(libc::PR_GET_TIMERSLACK, 0))?;
        let previous = previous.ok()? as libc::c_ulong;
        if previous <= 1 {
            return None;
        }
        TIMER_SLACK
            .call(any_error, || prctl(libc::PR_SET_TIMERSLACK, 1))?
            .ok()?;
        Some(SharpTimers { previous })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn begin() -> Option<SharpTimers> {
        None
    }

    /// False where there is no slack to lower, or prctl was refused.
    pub fn available() -> bool {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return !TIMER_SLACK.refused();
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        false
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Drop for SharpTimers {
    fn drop(&mut self) {
        // The same call just worked on this thread, so it does again; 0 is never put back
        // (it would mean "the default"), `begin` having left such a slack alone.
        let _ = prctl(libc::PR_SET_TIMERSLACK, self.previous);
    }
}

/// `prctl(option, arg, 0, 0, 0)` by number: the C library's wrapper returns an `int`, too
/// small for a slack of 2.2 s or more.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<libc::c_long> {
    let (option, zero) = (option as libc::c_ulong, 0 as libc::c_ulong);
    // SAFETY: PR_GET_TIMERSLACK and PR_SET_TIMERSLACK read no memory of ours.
    let n = unsafe { libc::syscall(libc::SYS_prctl, option, arg, zero, zero, zero) };
    if n == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n)
    }
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn strerror_names_the_error() {
        assert_eq!(super::strerror(libc::EBADF), "Bad file descriptor");
    }
}

/// The calling thread's timer slack, and setting it, for tests (each test runs on a thread
/// of its own, and the slack is the thread's).
#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
pub(crate) mod slack_for_tests {
    pub fn get() -> u64 {
        super::prctl(libc::PR_GET_TIMERSLACK, 0).unwrap() as u64
    }

    pub fn set(ns: u64) {
        super::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong).unwrap();
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod slack_tests {
    use super::slack_for_tests::{get, set};
    use super::SharpTimers;

    #[test]
    fn the_slack_is_1_ns_while_sharp_and_exactly_as_before_after() {
        // A slack above what the C library's `int` return can carry, too.
        for before in [50_000, 2, 123_456_789, 5_000_000_000] {
            set(before);
            let sharp = SharpTimers::begin();
            assert!(
                sharp.is_some(),
                "prctl works on Linux without a seccomp filter"
            );
            assert_eq!(get(), 1);
            drop(sharp);
            assert_eq!(get(), before);
        }
    }

    #[test]
    fn a_slack_already_sharp_is_left_alone() {
        set(1);
        assert!(SharpTimers::begin().is_none());
        assert_eq!(get(), 1);
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    #[test]
    fn windows_error_message_is_worded_as_cpython_words_it() {
        // WSAENOTSOCK, as in "[WinError 10038] An operation was attempted on something that
        // is not a socket" (no final dot).
        let text = super::windows_error_message(10038);
        assert!(!text.ends_with('.') && !text.ends_with('\n'), "{text:?}");
        assert!(!text.is_empty());
        assert_eq!(
            super::windows_error_message(0x7fff_0000),
            "Windows Error 0x7fff0000"
        );
    }
}
