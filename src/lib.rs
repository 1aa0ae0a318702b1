//! rselectors: CPython's `selectors` rebuilt in Rust.
//!
//! The core knows nothing of Python: `backend` (one file per OS mechanism), `selector` (what
//! every selector does over any backend), `table` (the fd -> key table), `timeout`,
//! `exclusive` (the EPOLLEXCLUSIVE switch), `lock` and `sys`. `python` is the binding that
//! converts between Python values and the core.

pub mod backend;
pub mod exclusive;
pub mod lock;
mod python;
pub mod selector;
pub mod sys;
pub mod table;
pub mod timeout;
