//! The exclusive-accept switch (issue 23), and what the kernel said about `EPOLLEXCLUSIVE`.
//!
//! Prefork servers wait on one listening socket in many epoll sets; a connection wakes them
//! all unless each registered it with `EPOLLEXCLUSIVE` (Linux 4.5+). With the switch on, an
//! Epoll registration of a listening socket for reading alone carries the flag
//! (`backend/epoll.rs`). Off, the default, registrations are the stdlib's.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

/// True when Epoll selectors register listening sockets watched for reading alone with
/// `EPOLLEXCLUSIVE`: `RSELECTORS_EXCLUSIVE_ACCEPT=1` at import, or
/// `rselectors.set_exclusive_accept(True)`.
static EXCLUSIVE_ACCEPT: AtomicBool = AtomicBool::new(false);

pub fn exclusive_accept() -> bool {
    EXCLUSIVE_ACCEPT.load(Ordering::Relaxed)
}

pub fn set_exclusive_accept(on: bool) {
    EXCLUSIVE_ACCEPT.store(on, Ordering::Relaxed);
}

/// Whether the kernel takes the flag, learnt once per process: from the first registration
/// that carried it, or, when one was refused (EINVAL: a kernel or sandbox that does not know
/// the flag, or a target that cannot have it, such as an epoll fd), from a probe. Once
/// refused, registrations go without it for the life of the process.
static FLAG: AtomicU8 = AtomicU8::new(FLAG_UNKNOWN);
const FLAG_UNKNOWN: u8 = 0;
const FLAG_WORKS: u8 = 1;
const FLAG_REFUSED: u8 = 2;
/// Test hook: the kernel is made to refuse the flag (without being asked), counting refusals,
/// so a test can tell one detection from one per registration.
static SIMULATE_REFUSAL: AtomicBool = AtomicBool::new(false);
static SIMULATED_REFUSALS: AtomicU32 = AtomicU32::new(0);

/// False once the kernel refused the flag.
pub fn flag_usable() -> bool {
    FLAG.load(Ordering::Relaxed) != FLAG_REFUSED
}

/// A registration carried the flag.
pub fn flag_works() {
    if FLAG.load(Ordering::Relaxed) != FLAG_WORKS {
        FLAG.store(FLAG_WORKS, Ordering::Relaxed);
    }
}

/// A registration with the flag got EINVAL: `kernel_takes_it` (the probe, run once) tells
/// whether the flag or the target was refused. True when the flag was.
pub fn flag_refused(kernel_takes_it: impl FnOnce() -> bool) -> bool {
    match FLAG.load(Ordering::Relaxed) {
        FLAG_WORKS => false,
        FLAG_REFUSED => true,
        _ => {
            let refused = simulating_refusal() || !kernel_takes_it();
            FLAG.store(
                if refused { FLAG_REFUSED } else { FLAG_WORKS },
                Ordering::Relaxed,
            );
            refused
        }
    }
}

/// True when the test hook makes the kernel refuse the flag; counts the refusal.
pub fn simulated_refusal() -> bool {
    if simulating_refusal() {
        SIMULATED_REFUSALS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    false
}

fn simulating_refusal() -> bool {
    SIMULATE_REFUSAL.load(Ordering::Relaxed)
}

/// Test hook: forgets what was learnt about the flag, and makes the kernel refuse it (true)
/// or ask the kernel again (false).
pub fn simulate_refusal(on: bool) {
    SIMULATE_REFUSAL.store(on, Ordering::Relaxed);
    SIMULATED_REFUSALS.store(0, Ordering::Relaxed);
    FLAG.store(FLAG_UNKNOWN, Ordering::Relaxed);
}

/// `"unknown"`, `"works"` or `"refused"`: what the registrations so far learnt of the flag.
pub fn flag_state() -> &'static str {
    match FLAG.load(Ordering::Relaxed) {
        FLAG_WORKS => "works",
        FLAG_REFUSED => "refused",
        _ => "unknown",
    }
}

/// How many registrations the test hook refused since it was last set.
pub fn simulated_refusals() -> u32 {
    SIMULATED_REFUSALS.load(Ordering::Relaxed)
}
