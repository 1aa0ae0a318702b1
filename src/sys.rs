//! What the core needs of the OS beyond one mechanism: the `syscall!` macro (a `-1` return
//! into `io::Error`), fd conversion, errno text, EINTR, and a counter of `fork()`s.

use std::io;

/// Calls a libc function (or `module::function` of another C library) and turns a `-1`
/// return into the thread's `errno`.
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

static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many times this process is a `fork()` away from the one that first asked: lets a
/// handle tell waits of its own process from those of threads a fork left behind.
pub fn fork_generation() -> u64 {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is fork-safe.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn strerror_names_the_error() {
        assert_eq!(super::strerror(libc::EBADF), "Bad file descriptor");
    }
}
