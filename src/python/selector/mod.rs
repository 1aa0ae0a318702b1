//! The selector classes, one room per job (each imports only rooms listed before it):
//!
//! - `class_rules.rs`: what each stdlib class does its own way, one `Class` value per class;
//! - `entry.rs`: what the table holds per fd, and one ready fd as `select()` finds it;
//! - `poller.rs`: an instance of a replaced `_selector_cls`, called as the stdlib calls it;
//! - `select_sets.rs`: SelectSelector's `_readers` and `_writers`;
//! - `base.rs`: the `_Selector` base class, its rules and its state behind the lock;
//! - `classes.rs`: the concrete classes, each made with its `Class`;
//! - `methods.rs`: the base class's Python methods, each an entry into a room below;
//! - `lookup.rs`: finding a file object's key with a dict's semantics and KeyErrors;
//! - `os_steps.rs`: the OS side step by step, the core or a replaced `_selector_cls`;
//! - `register.rs`: `register` and `unregister` in the stdlib's order;
//! - `modify.rs`: `modify`, on the stdlib's two paths;
//! - `select_steps.rs`: SelectSelector's steps around its sets, and a replaced `_select`;
//! - `results.rs`: `select()`'s result list and the per-key cache of result tuples;
//! - `wait.rs`: `select()`, its look and its wait;
//! - `gc.rs`: the garbage collector's hooks.

mod base;
mod class_rules;
mod classes;
mod entry;
mod gc;
mod lookup;
mod methods;
mod modify;
mod os_steps;
mod poller;
mod register;
mod results;
mod select_sets;
mod select_steps;
mod wait;

pub use base::SelectorBase;
#[cfg(epoll)]
pub use classes::EpollSelector;
#[cfg(kqueue)]
pub use classes::KqueueSelector;
#[cfg(unix)]
pub use classes::PollSelector;
pub use classes::SelectSelector;
pub(crate) use select_steps::_set_select_steps;
