//! The garbage collector's hooks: what a selector holds (keys, cached result tuples, the
//! mapping, a replaced poller, SelectSelector's sets), and how a cycle through it is broken.

use pyo3::types::PySetMethods;
use pyo3::{PyTraverseError, PyVisit};

use super::base::SelectorBase;

impl SelectorBase {
    /// `__traverse__`. Never waits for the lock: visiting less only delays a collection.
    pub(super) fn traverse(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(state) = self.state.try_lock() else {
            return Ok(());
        };
        for (_, entry) in state.core.keys().iter() {
            visit.call(&entry.key)?;
            for tuple in entry.results.iter().flat_map(|c| c.tuples.iter()).flatten() {
                visit.call(tuple)?;
            }
        }
        if let Some(mapping) = &state.mapping {
            visit.call(mapping)?;
        }
        if let Some(poller) = self.poller_object() {
            visit.call(poller)?;
        }
        if let Some(sets) = &self.sets {
            visit.call(&sets.readers)?;
            visit.call(&sets.writers)?;
        }
        Ok(())
    }

    /// `__clear__`: the keys and the mapping go, the OS handle stays (the object is still
    /// alive, only its references are dropped).
    pub(super) fn clear(&self) {
        let (entries, mapping) = match self.state.try_lock() {
            Some(mut state) => (state.core.close_keys(), state.mapping.take()),
            None => return,
        };
        drop(entries);
        drop(mapping);
        if let Some(sets) = &self.sets {
            // SAFETY: the garbage collector calls `__clear__` with the thread attached.
            let py = unsafe { pyo3::Python::assume_attached() };
            // Emptying the sets frees what they hold: nothing of ours is locked now.
            sets.readers.bind(py).clear();
            sets.writers.bind(py).clear();
        }
    }
}
