//! The selector classes, one room per job:
//!
//! - `base.rs`: the `_Selector` class, its locked state and its Python methods;
//! - `classes.rs`: the concrete classes, one `Kind` each;
//! - `lookup.rs`: finding a file object's key with a dict's semantics and KeyErrors;
//! - `register.rs`: `register` and `unregister` in the stdlib's order;
//! - `modify.rs`: `modify`, on the stdlib's two paths;
//! - `wait.rs`: `select()`, its look and its wait;
//! - `results.rs`: the result list and the per-key cache of result tuples;
//! - `poller.rs`: the seam to the OS side, the core or a replaced `_selector_cls`;
//! - `select_sets.rs`: SelectSelector's `_readers` and `_writers`, and the steps they order;
//! - `gc.rs`: the garbage collector's hooks.

mod base;
mod classes;
mod gc;
mod lookup;
mod modify;
mod poller;
mod register;
mod results;
mod select_sets;
mod wait;

pub use base::SelectorBase;
#[cfg(epoll)]
pub use classes::EpollSelector;
#[cfg(kqueue)]
pub use classes::KqueueSelector;
#[cfg(unix)]
pub use classes::PollSelector;
pub use classes::SelectSelector;
pub(crate) use select_sets::_set_select_steps;
