//! The concrete selector classes (`EpollSelector`, `KqueueSelector`, `PollSelector`,
//! `SelectSelector`): each a `SelectorBase` of one `Kind`, made by one macro.

use pyo3::prelude::*;

use super::base::SelectorBase;
use crate::backend::Kind;

macro_rules! selector_class {
    ($name:ident, $py_name:literal, $kind:expr, $doc:literal $(, $extra:item)*) => {
        #[doc = $doc]
        #[pyclass(frozen, subclass, extends = SelectorBase, module = "rselectors._rselectors", name = $py_name)]
        pub struct $name;

        #[pymethods]
        impl $name {
            #[new]
            fn new() -> PyResult<PyClassInitializer<Self>> {
                Ok(PyClassInitializer::from(SelectorBase::new($kind)?).add_subclass($name))
            }

            $($extra)*
        }
    };
}

#[cfg(epoll)]
selector_class!(
    EpollSelector,
    "EpollSelector",
    Kind::Epoll,
    "Epoll-based selector.",
    /// The epoll fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    }
);
#[cfg(kqueue)]
selector_class!(
    KqueueSelector,
    "KqueueSelector",
    Kind::Kqueue,
    "Kqueue-based selector.",
    /// The kqueue fd.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        slf.as_super().get().os_fileno(slf.py())
    }
);
#[cfg(unix)]
selector_class!(
    PollSelector,
    "PollSelector",
    Kind::Poll,
    "Poll-based selector."
);
selector_class!(
    SelectSelector,
    "SelectSelector",
    Kind::Select,
    "Select-based selector."
);
