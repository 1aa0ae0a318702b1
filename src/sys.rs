//! What the core needs of the OS beyond one mechanism: the `syscall!` macro (a `-1` return
//! into `io::Error`; POSIX), fd conversion, error text as CPython words it (`strerror` on
//! POSIX, `FormatMessageW` on Windows), EINTR, and a counter of `fork()`s (POSIX).

use std::io;

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

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn strerror_names_the_error() {
        assert_eq!(super::strerror(libc::EBADF), "Bad file descriptor");
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
