//! The concrete selector classes (`SelectSelector`, `PollSelector`, `EpollSelector`,
//! `KqueueSelector`): each a `SelectorBase` made with its class's rules (`class_rules.rs`),
//! and the methods only that class has.

use pyo3::prelude::*;

use super::base::SelectorBase;
#[cfg(epoll)]
use super::class_rules::EPOLL;
#[cfg(kqueue)]
use super::class_rules::KQUEUE;
#[cfg(unix)]
use super::class_rules::POLL;
use super::class_rules::SELECT;
#[cfg(epoll)]
use crate::backend::epoll::EXCLUSIVE;
#[cfg(epoll)]
use crate::python::{errors::backend_error, events::interest_of};

macro_rules! selector_class {
    ($name:ident, $py_name:literal, $class:expr, $doc:literal $(, $extra:item)*) => {
        #[doc = $doc]
        #[pyclass(frozen, subclass, extends = SelectorBase, module = "rselectors._rselectors", name = $py_name)]
        pub struct $name;

        #[pymethods]
        impl $name {
            #[new]
            fn new(py: Python<'_>) -> PyResult<PyClassInitializer<Self>> {
                Ok(PyClassInitializer::from(SelectorBase::new(py, $class)?).add_subclass($name))
            }

            $($extra)*
        }
    };
}

#[cfg(epoll)]
selector_class!(
    EpollSelector,
    "EpollSelector",
    EPOLL,
    "Epoll-based selector.",
    /// The epoll fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    },
    /// `register_exclusive`'s second step (`python/rselectors/__init__.py`): the
    /// registration `register` just made for `fd` gets `EPOLLEXCLUSIVE` (the kernel takes it
    /// only in a new registration: deleted and added again). If that fails, the key goes
    /// and the error is raised, as after a refused registration. A replaced `_selector_cls`
    /// keeps its plain one.
    fn _make_exclusive(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        fd: u64,
        events: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let base = slf.as_super().get();
        if !base.native() {
            return Ok(());
        }
        let interest = interest_of(events)? | EXCLUSIVE;
        let result = base.lock()?.core.modify_interest(fd, interest);
        result.map_err(|err| base.undo_register(fileobj, backend_error(err)))
    }
);
#[cfg(kqueue)]
selector_class!(
    KqueueSelector,
    "KqueueSelector",
    KQUEUE,
    "Kqueue-based selector.",
    /// The kqueue fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    }
);
#[cfg(unix)]
selector_class!(PollSelector, "PollSelector", POLL, "Poll-based selector.");
selector_class!(
    SelectSelector,
    "SelectSelector",
    SELECT,
    "Select-based selector."
);
