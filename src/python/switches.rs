//! The process-wide switches, each a getter and a setter, and read from its environment
//! variable at import for a program that cannot be changed: millisecond timeouts
//! (`timeout.rs` in the core has the switch) and exclusive accept (`exclusive.rs`).

use pyo3::prelude::*;

/// Whether Poll and Epoll waits round their timeout up to whole milliseconds, as the
/// stdlib's do (True), or keep it to the microsecond and finer (False, the default).
#[pyfunction]
fn millisecond_timeouts() -> bool {
    crate::timeout::millisecond_timeouts()
}

/// Sets what `millisecond_timeouts()` answers, for every selector of the process, from
/// its next wait on; returns the previous setting.
#[pyfunction]
fn set_millisecond_timeouts(enabled: bool) -> bool {
    let before = crate::timeout::millisecond_timeouts();
    crate::timeout::set_millisecond_timeouts(enabled);
    before
}

/// Whether Epoll selectors register a listening socket watched for reading alone with
/// `EPOLLEXCLUSIVE` (True), waking one waiting process per connection, or as the stdlib does
/// (False, the default).
#[pyfunction]
fn exclusive_accept() -> bool {
    crate::exclusive::exclusive_accept()
}

/// Sets what `exclusive_accept()` answers, for every Epoll selector of the process, from its
/// next registration on; returns the previous setting.
#[pyfunction]
fn set_exclusive_accept(enabled: bool) -> bool {
    let before = crate::exclusive::exclusive_accept();
    crate::exclusive::set_exclusive_accept(enabled);
    before
}

/// Test hook: `(state, simulated_refusals)`, where state is what registrations so far learnt
/// of `EPOLLEXCLUSIVE` ("unknown", "works", "refused"). With `simulate_refusal`, first forgets
/// that, and makes the kernel refuse the flag (True) as an old kernel or a sandbox would, or
/// asks it again (False).
#[pyfunction]
#[pyo3(signature = (simulate_refusal=None))]
fn _exclusive_flag(simulate_refusal: Option<bool>) -> (&'static str, u32) {
    if let Some(on) = simulate_refusal {
        crate::exclusive::simulate_refusal(on);
    }
    (
        crate::exclusive::flag_state(),
        crate::exclusive::simulated_refusals(),
    )
}

/// Adds the functions, and turns on each switch whose environment variable is set to
/// anything but "" or "0": `RSELECTORS_MS_TIMEOUTS`, `RSELECTORS_EXCLUSIVE_ACCEPT`.
pub fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(millisecond_timeouts, m)?)?;
    m.add_function(wrap_pyfunction!(set_millisecond_timeouts, m)?)?;
    m.add_function(wrap_pyfunction!(exclusive_accept, m)?)?;
    m.add_function(wrap_pyfunction!(set_exclusive_accept, m)?)?;
    m.add_function(wrap_pyfunction!(_exclusive_flag, m)?)?;
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if set("RSELECTORS_MS_TIMEOUTS") {
        crate::timeout::set_millisecond_timeouts(true);
    }
    if set("RSELECTORS_EXCLUSIVE_ACCEPT") {
        crate::exclusive::set_exclusive_accept(true);
    }
    Ok(())
}
