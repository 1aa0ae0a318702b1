//! rselectors: CPython's `selectors` rebuilt in Rust.
//!
//! `table`, `timeout`, `exclusive`, `backend` and `selector` are the platform-neutral core and know nothing
//! of Python; `python` is the binding that converts between the two.

pub mod backend;
pub mod exclusive;
pub mod lock;
mod python;
pub mod selector;
pub mod sys;
pub mod table;
pub mod timeout;
