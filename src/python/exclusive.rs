//! The exclusive-accept switch's functions (`exclusive.rs` in the core has the switch).

use pyo3::prelude::*;

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

/// Adds the functions, and reads the switch for a program that cannot be changed:
/// `RSELECTORS_EXCLUSIVE_ACCEPT` set to anything but "" or "0", at import.
pub fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(exclusive_accept, m)?)?;
    m.add_function(wrap_pyfunction!(set_exclusive_accept, m)?)?;
    m.add_function(wrap_pyfunction!(_exclusive_flag, m)?)?;
    if std::env::var_os("RSELECTORS_EXCLUSIVE_ACCEPT").is_some_and(|v| !v.is_empty() && v != "0") {
        crate::exclusive::set_exclusive_accept(true);
    }
    Ok(())
}
