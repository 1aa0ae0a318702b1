//! The `events` and `data` arguments: the stdlib's check of `events`, the interest it asks the
//! OS for, and `!=` between old and new values, natively where no Python code can run.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

use crate::backend::{READ, WRITE};
use crate::python::fd::{is_plain_int, plain_int_value};

/// `events` as a plain number when it is an `int` or `bool` that fits, the case worth a fast
/// path; a subclass may override the operators, so it takes the general path.
pub fn events_as_i64(events: &Bound<'_, PyAny>) -> Option<i64> {
    if is_plain_int(events) {
        plain_int_value(events)
    } else {
        None
    }
}

/// The check at the top of `register`: `if (not events) or (events & ~(READ | WRITE))`.
/// Returns `events_as_i64(events)`, for the caller's fast path.
pub fn check_register_events(events: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let plain = events_as_i64(events);
    let invalid = match plain {
        Some(e) => e == 0 || e & !3 != 0,
        None => !events.is_truthy()? || events.bitand(!3i64)?.is_truthy()?,
    };
    if invalid {
        return Err(PyValueError::new_err(format!(
            "Invalid events: {}",
            events.repr()?
        )));
    }
    Ok(plain)
}

/// What to ask the OS for: `events & EVENT_READ`, then `events & EVENT_WRITE`, each
/// truth-tested, as Python would compute them for whatever `events` is.
pub fn interest_of(events: &Bound<'_, PyAny>) -> PyResult<u8> {
    if let Some(e) = events_as_i64(events) {
        return Ok((e & i64::from(READ | WRITE)) as u8);
    }
    let mut interest = 0;
    for bit in [READ, WRITE] {
        if wants(events, bit)? {
            interest |= bit;
        }
    }
    Ok(interest)
}

/// `events & bit`, truth-tested: one step of the stdlib's `if events & EVENT_READ:`.
pub fn wants(events: &Bound<'_, PyAny>, bit: u8) -> PyResult<bool> {
    events.bitand(i64::from(bit))?.is_truthy()
}

/// `a != b` as Python evaluates it, skipping the call where identity settles it.
pub fn differs(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    match differs_natively(a, b) {
        Some(result) => Ok(result),
        None => a.ne(b),
    }
}

/// `a != b` when it can be answered without running Python code or allocating (either could
/// see the selector half-way through a call): the same None or int, two plain ints that fit
/// in 64 bits, or two objects compared by identity. Safe to call under the selector's lock.
pub fn differs_natively(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> Option<bool> {
    if a.is(b) && (a.is_none() || a.is_exact_instance_of::<PyInt>()) {
        return Some(false);
    }
    if let (Some(a), Some(b)) = (exact_i64(a), exact_i64(b)) {
        return Some(a != b);
    }
    (compares_by_identity(a) && compares_by_identity(b)).then(|| !a.is(b))
}

/// Whether `obj`'s type keeps `object`'s own comparison (no `__eq__` or `__ne__` in its MRO:
/// `object()`, instances of most classes, None): between two such objects `!=` is `is not`,
/// decided by `object`'s C code without running Python code.
#[inline]
fn compares_by_identity(obj: &Bound<'_, PyAny>) -> bool {
    #[cfg(not(feature = "abi3"))]
    {
        // SAFETY: reading a slot of a live object's type and of `object`'s static type. Both
        // hold the address of one C function of the interpreter when they are equal.
        let (own, object) = unsafe {
            (
                (*obj.get_type_ptr()).tp_richcompare,
                (*std::ptr::addr_of!(pyo3::ffi::PyBaseObject_Type)).tp_richcompare,
            )
        };
        own.is_some() && own.map(|f| f as usize) == object.map(|f| f as usize)
    }
    // The limited API hides the slots: the general path compares.
    #[cfg(feature = "abi3")]
    {
        let _ = obj;
        false
    }
}

/// The value of an `int` itself that fits in 64 bits (`plain_int_value`); callers use it
/// under the selector's lock.
fn exact_i64(obj: &Bound<'_, PyAny>) -> Option<i64> {
    if !obj.is_exact_instance_of::<PyInt>() {
        return None;
    }
    plain_int_value(obj)
}
