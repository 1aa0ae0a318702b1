//! The binding: the `_rselectors` module, whose classes convert between Python values and the
//! core. `selector/` holds the selector classes, `mapping.rs` the `get_map()` view, `key.rs`
//! `SelectorKey`; `fd.rs`, `events.rs`, `timeout_arg.rs` read arguments as the stdlib reads
//! them (`timeout_arg.rs` per class), `errors.rs` turns core errors into its exceptions and
//! `switches.rs` has the process-wide switches' functions.

mod errors;
mod events;
mod fd;
mod key;
mod mapping;
mod selector;
mod switches;
mod timeout_arg;

use pyo3::prelude::*;

use mapping::SelectorMapping;
#[cfg(epoll)]
use selector::EpollSelector;
#[cfg(kqueue)]
use selector::KqueueSelector;
#[cfg(unix)]
use selector::PollSelector;
use selector::{SelectSelector, SelectorBase};

/// Test hook (epoll builds): `(state, simulated_failures)`, where state is what the calls of
/// `epoll_pwait2` so far found ("unknown", "works", "missing"). With `simulate_errno`, first
/// forgets that and makes the next calls fail with that errno (0: call the kernel again), as
/// a kernel without it (ENOSYS) or a seccomp filter (EPERM) would, counting them.
#[cfg(epoll)]
#[pyfunction]
#[pyo3(signature = (simulate_errno=None))]
fn _epoll_pwait2(simulate_errno: Option<i32>) -> (&'static str, u32) {
    probe_hook(&crate::backend::epoll::EPOLL_PWAIT2, simulate_errno)
}

/// Test hook: the same for `prctl(PR_GET_TIMERSLACK / PR_SET_TIMERSLACK)`, which waits of up
/// to 10 ms make ("unknown", "works", "refused"). Linux only.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[pyfunction]
#[pyo3(signature = (simulate_errno=None))]
fn _timer_slack(simulate_errno: Option<i32>) -> (&'static str, u32) {
    probe_hook(&crate::sys::TIMER_SLACK, simulate_errno)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn probe_hook(probe: &crate::sys::Probe, simulate_errno: Option<i32>) -> (&'static str, u32) {
    if let Some(errno) = simulate_errno {
        probe.simulate_errno(errno);
    }
    (probe.state_name(), probe.simulated_failures())
}

/// `gil_used = false`: safe without a GIL, by review, and run so by `.ci/run`'s free-threaded
/// stage (the suites on CPython 3.13t with the GIL off). Every selector's state is behind its
/// own `Mutex`, held only for increfs, Rust allocations and non-blocking system calls, and
/// waited for detached (`lock_py_attached`), so no stop-the-world pause waits on it. The raw
/// C-API writes (`PyType_GenericAlloc` + `PyTuple_SET_ITEM`, `PyList_New` + `PyList_SET_ITEM`)
/// fill objects no other thread can see yet; borrowed reads are of tuple items (immutable),
/// each turned into a new reference at once; the cached `(key, events)` tuples are
/// immutable and change hands only under the lock; the types are made once, in `PyOnceLock`s.
/// The one non-frozen class, the mapping iterator, is guarded by pyo3's borrow flag: two
/// threads advancing one iterator at once get a RuntimeError, not a race.
#[pymodule(gil_used = false)]
fn _rselectors(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EVENT_READ", crate::backend::READ)?;
    m.add("EVENT_WRITE", crate::backend::WRITE)?;
    m.add_class::<SelectorBase>()?;
    #[cfg(epoll)]
    m.add_class::<EpollSelector>()?;
    #[cfg(kqueue)]
    m.add_class::<KqueueSelector>()?;
    // Whether that KqueueSelector runs on libkqueue (Linux) rather than a kernel's kqueue.
    #[cfg(kqueue)]
    m.add("_ON_LIBKQUEUE", cfg!(libkqueue))?;
    #[cfg(unix)]
    m.add_class::<PollSelector>()?;
    m.add_class::<SelectSelector>()?;
    m.add_class::<SelectorMapping>()?;
    #[cfg(epoll)]
    m.add_function(wrap_pyfunction!(_epoll_pwait2, m)?)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    m.add_function(wrap_pyfunction!(_timer_slack, m)?)?;
    switches::add_to(m)?;
    if m.py().version_info() >= (3, 13) {
        // Removed from selectors.py in 3.13 (gh-106554).
        m.getattr("_Selector")?.delattr("_key_from_fd")?;
    }
    m.add_function(wrap_pyfunction!(key::_set_types, m)?)?;
    m.add_function(wrap_pyfunction!(selector::_set_select_steps, m)?)?;
    Ok(())
}
