//! The pending table: pair key hash → the pending slab entry of the oldest
//! copy waiting under that key. Open addressing with linear probing over
//! 8-byte entries (a 32-bit tag of the hash and the 32-bit value), at most
//! half full, deletion by backward shift (no tombstones).
//!
//! Why not `hashbrown::HashTable` (used until round 8): the correlator
//! probes this table three to four times a packet and inserts about once;
//! hashbrown's insert (growth check, SIMD group probe, the hasher closure
//! kept for a resize) cost ~30 instructions more than this one (callgrind),
//! and the bucket a key lands in cannot be prefetched from outside. Here
//! the home entry of a hash is one load, a probe compares tags and asks the
//! caller to compare keys only on a tag match, and an insert of a key known
//! absent walks to the first empty entry without comparing anything.
//!
//! The table keeps no keys: the caller's `eq` compares the key of the
//! value (a slab entry) with the one looked for. The tag is the hash's high
//! 32 bits; the home position is the tag's low bits, so the table grows
//! (doubles, when half full) without the full hash.

/// A value no entry holds: marks an empty entry.
const EMPTY: u32 = u32::MAX;

/// Entries of the first allocation (the table starts with none).
const CAPACITY_MIN: usize = 16;

/// One entry: the hash's tag (high 32 bits) and the value ([`EMPTY`]: none).
/// Aligned to its size, so an entry never straddles two cache lines (one
/// prefetch loads it, [`super::slab::prefetch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
struct Entry {
    tag: u32,
    val: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 8 && std::mem::align_of::<Entry>() == 8);

const VACANT: Entry = Entry { tag: 0, val: EMPTY };

/// See the module docs. Values are `u32` below `u32::MAX`.
#[derive(Clone, Debug, Default)]
pub(super) struct PendingTable {
    entries: Vec<Entry>,
    /// `entries.len() - 1` (a power of two minus one), 0 while unallocated.
    mask: usize,
    len: usize,
}

/// Where a probe found its key: pass to [`PendingTable::get`],
/// [`PendingTable::set`] or [`PendingTable::remove`] before any other
/// change to the table.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found(usize);

impl Found {
    /// A placeholder for no entry: never passed to the table.
    pub(super) const NONE: Found = Found(usize::MAX);
}

/// Where a probe for a key the table does not hold ended: the first empty
/// entry of the key's probe run, where [`PendingTable::place`] would put
/// it. [`PendingTable::insert_vacant`] puts the key there without walking
/// the run again. Pass it before any other change to the table (a removal
/// may empty an entry before it, an insertion fill it).
#[derive(Clone, Copy, Debug)]
pub(super) struct Vacant(usize);

#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl PendingTable {
    /// Values held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is held.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held.
    pub(super) fn allocation_size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    /// Every value held, in table order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .filter(|e| e.val != EMPTY)
            .map(|e| e.val)
    }

    /// Starts loading the entry a key hashed `hash` lands on (a hint).
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(e) = self.entries.get(tag_of(hash) as usize & self.mask) {
            super::slab::prefetch(e);
        }
    }

    /// The entry of the key hashed `hash` for which `eq` (given the value)
    /// holds; `eq` is asked only about values whose tag matches.
    #[inline(always)]
    pub(super) fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<Found> {
        self.find_or_vacant(hash, eq).ok()
    }

    /// [`find`](Self::find), and where it ended when the key is not held
    /// (`Err`: the first empty entry of its run, for
    /// [`insert_vacant`](Self::insert_vacant)).
    #[inline(always)]
    pub(super) fn find_or_vacant(
        &self,
        hash: u64,
        eq: impl FnMut(u32) -> bool,
    ) -> Result<Found, Vacant> {
        self.find_val_or_vacant(hash, eq).map(|(at, _)| at)
    }

    /// [`find`](Self::find) with the value found (what [`get`](Self::get)
    /// of the entry returns, read once: the probe has it).
    #[inline(always)]
    pub(super) fn find_val(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<(Found, u32)> {
        self.find_val_or_vacant(hash, eq).ok()
    }

    /// [`find_or_vacant`](Self::find_or_vacant) with the value found.
    #[inline(always)]
    pub(super) fn find_val_or_vacant(
        &self,
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Result<(Found, u32), Vacant> {
        let entries = &self.entries[..];
        if entries.is_empty() {
            // No entry: `insert_vacant` grows the table first.
            return Err(Vacant(usize::MAX));
        }
        // `mask` as the slice's length says it (the same value): each
        // index below is then provably in bounds, with no check.
        let mask = entries.len() - 1;
        let tag = tag_of(hash);
        let mut i = tag as usize & mask;
        loop {
            let e = entries[i];
            if e.val == EMPTY {
                return Err(Vacant(i));
            }
            if e.tag == tag && eq(e.val) {
                return Ok((Found(i), e.val));
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether a key hashed `hash` may be held: some value on the probe
    /// run from its home entry has its tag. `false`: [`find`](Self::find)
    /// of `hash` returns `None` whatever its `eq`, so the caller can skip
    /// the probe (and everything it would set up for the key compares);
    /// most probes of the correlator find nothing (a packet's first copy).
    #[inline(always)]
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        self.may_hold_or_vacant(hash).is_ok()
    }

    /// [`may_hold`](Self::may_hold) as `Ok`, and where the probe ended when
    /// no value of the run has the tag (`Err`: the first empty entry of the
    /// run, for [`insert_vacant`](Self::insert_vacant)).
    #[inline(always)]
    pub(super) fn may_hold_or_vacant(&self, hash: u64) -> Result<(), Vacant> {
        let entries = &self.entries[..];
        if entries.is_empty() {
            return Err(Vacant(usize::MAX));
        }
        let mask = entries.len() - 1;
        let tag = tag_of(hash);
        let mut i = tag as usize & mask;
        loop {
            let e = entries[i];
            if e.val == EMPTY {
                return Err(Vacant(i));
            }
            if e.tag == tag {
                return Ok(());
            }
            i = (i + 1) & mask;
        }
    }

    /// The value at `at`.
    #[inline(always)]
    pub(super) fn get(&self, at: Found) -> u32 {
        self.entries[at.0].val
    }

    /// Replaces the value at `at` (same key).
    #[inline(always)]
    pub(super) fn set(&mut self, at: Found, val: u32) {
        assert!(val != EMPTY);
        self.entries[at.0].val = val;
    }

    /// Inserts `val` under a key hashed `hash` that the table does not hold
    /// (the caller's probe found it absent), growing first if half full.
    #[inline]
    pub(super) fn insert_unique(&mut self, hash: u64, val: u32) {
        assert!(val != EMPTY, "value u32::MAX");
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(Entry {
            tag: tag_of(hash),
            val,
        });
        self.len += 1;
    }

    /// [`insert_unique`](Self::insert_unique) where the caller's probe
    /// for the key (absent) ended: `at`, from
    /// [`find_or_vacant`](Self::find_or_vacant) or
    /// [`may_hold_or_vacant`](Self::may_hold_or_vacant) of the same hash,
    /// with no change to the table since. The same entries as
    /// `insert_unique` leaves (test `insert_vacant_is_insert_unique`),
    /// without walking the run a second time (most copies that wait come
    /// after a probe that found nothing under their key).
    #[inline(always)]
    pub(super) fn insert_vacant(&mut self, hash: u64, val: u32, at: Vacant) {
        assert!(val != EMPTY, "value u32::MAX");
        let e = Entry {
            tag: tag_of(hash),
            val,
        };
        if (self.len + 1) * 2 > self.entries.len() {
            // Growing moves every entry: `at` is stale.
            self.grow();
            self.place(e);
        } else {
            debug_assert_eq!(Some(at.0), self.first_vacant(e.tag), "stale vacant entry");
            let v = &mut self.entries[at.0];
            assert!(v.val == EMPTY, "vacant entry {} holds a value", at.0);
            *v = e;
        }
        self.len += 1;
    }

    /// The first empty entry from `tag`'s home (debug checks).
    fn first_vacant(&self, tag: u32) -> Option<usize> {
        let mask = self.entries.len().checked_sub(1)?;
        let mut i = tag as usize & mask;
        for _ in 0..self.entries.len() {
            if self.entries[i].val == EMPTY {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Puts `e` in the first empty entry from its home (room assured).
    #[inline(always)]
    fn place(&mut self, e: Entry) {
        let entries = &mut self.entries[..];
        // Not empty (room assured); `mask` from the length, as in `find`.
        let mask = entries.len().wrapping_sub(1);
        if entries.is_empty() {
            unreachable!("placing in an empty pending table");
        }
        let mut i = e.tag as usize & mask;
        while entries[i].val != EMPTY {
            i = (i + 1) & mask;
        }
        entries[i] = e;
    }

    /// Doubles the entries (or allocates the first) and places every value
    /// again. Out of line: rare.
    #[inline(never)]
    fn grow(&mut self) {
        let n = (self.entries.len() * 2).max(CAPACITY_MIN);
        let old = std::mem::replace(&mut self.entries, vec![VACANT; n]);
        self.mask = n - 1;
        for e in old {
            if e.val != EMPTY {
                self.place(e);
            }
        }
    }

    /// Removes the value at `at`; the entries after it in its run move back
    /// so that every value stays reachable from its home without gaps.
    #[inline(always)]
    pub(super) fn remove(&mut self, at: Found) {
        let entries = &mut self.entries[..];
        // `mask` from the length, as in `find` (`at` is one of its entries,
        // so the table is not empty): the indices after `at` need no check.
        let mask = entries.len().wrapping_sub(1);
        let mut hole = at.0;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = entries[j];
            if e.val == EMPTY {
                break;
            }
            let home = e.tag as usize & mask;
            // `e` may fill the hole if its home is not in (hole, j]
            // (cyclically): then the hole lies on its probe path.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                entries[hole] = e;
                hole = j;
            }
        }
        entries[hole] = VACANT;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Operations on keys of [`hash_of`]; a value's key is looked up in a
    /// map (as the correlator looks it up in its slab).
    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        InsertVacant(u64),
        Remove(u64),
        Set(u64),
        Find(u64),
    }

    fn key() -> impl Strategy<Value = u64> {
        0u64..160
    }

    /// 160 keys on 8 tags: keys with one tag share a home (long runs, tag
    /// matches that are not the key); the tags' homes spread over the
    /// entries, so small tables wrap runs around their end.
    fn hash_of(k: u64) -> u64 {
        u64::from(((k % 8) as u32).wrapping_mul(0x9e37_79b9)) << 32 | k
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            key().prop_map(Op::Insert),
            key().prop_map(Op::InsertVacant),
            key().prop_map(Op::Remove),
            key().prop_map(Op::Set),
            key().prop_map(Op::Find),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Against a `HashMap` model: inserts of absent keys (also where
        /// their probe ended, `insert_vacant`), removals,
        /// replaced values and lookups (and `may_hold` at each lookup), with
        /// colliding tags, long runs, wrap-around, growth and a table that
        /// fills and empties.
        #[test]
        fn pending_table_matches_a_hashmap(ops in proptest::collection::vec(op(), 1..400)) {
            let mut t = PendingTable::default();
            let mut model: HashMap<u64, u32> = HashMap::new();
            // value -> key, as the slab would say.
            let mut keys: HashMap<u32, u64> = HashMap::new();
            let mut next_val = 0u32;
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        if let std::collections::hash_map::Entry::Vacant(e) = model.entry(k) {
                            t.insert_unique(hash_of(k), next_val);
                            e.insert(next_val);
                            keys.insert(next_val, k);
                            next_val += 1;
                        }
                    }
                    Op::InsertVacant(k) => {
                        // Where the probe ended, then the insert there:
                        // the same entries as `insert_unique` makes.
                        let probe = t.find_or_vacant(hash_of(k), |v| keys[&v] == k);
                        prop_assert_eq!(probe.is_ok(), model.contains_key(&k));
                        let tagged = t.may_hold_or_vacant(hash_of(k));
                        if let (Err(v), Err(w)) = (probe, tagged) {
                            prop_assert_eq!(v.0, w.0);
                        }
                        if let Err(v) = probe {
                            let mut u = t.clone();
                            u.insert_unique(hash_of(k), next_val);
                            t.insert_vacant(hash_of(k), next_val, v);
                            prop_assert_eq!(&t.entries, &u.entries);
                            model.insert(k, next_val);
                            keys.insert(next_val, k);
                            next_val += 1;
                        }
                    }
                    Op::Remove(k) => {
                        let at = t.find(hash_of(k), |v| keys[&v] == k);
                        prop_assert_eq!(at.is_some(), model.contains_key(&k));
                        if let Some(at) = at {
                            prop_assert_eq!(t.get(at), model[&k]);
                            t.remove(at);
                            model.remove(&k);
                        }
                    }
                    Op::Set(k) => {
                        if let Some(at) = t.find(hash_of(k), |v| keys[&v] == k) {
                            t.set(at, next_val);
                            model.insert(k, next_val);
                            keys.insert(next_val, k);
                            next_val += 1;
                        }
                    }
                    Op::Find(k) => {
                        let got = t.find(hash_of(k), |v| keys[&v] == k).map(|at| t.get(at));
                        prop_assert_eq!(got, model.get(&k).copied());
                        let with_val = t.find_val(hash_of(k), |v| keys[&v] == k);
                        prop_assert_eq!(with_val.map(|(at, v)| (at.0, v)), t.find(hash_of(k), |v| keys[&v] == k).map(|at| (at.0, t.get(at))));
                        // `may_hold`: some value on the run has the tag,
                        // i.e. a probe that accepts any value finds one;
                        // `false` only for keys not held.
                        let any = t.find(hash_of(k), |_| true).is_some();
                        prop_assert_eq!(t.may_hold(hash_of(k)), any);
                        prop_assert!(t.may_hold(hash_of(k)) || !model.contains_key(&k));
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert!(t.len() * 2 <= t.entries.len() || t.entries.is_empty());
            }
            // Every key the model holds is found, nothing else is held.
            for (&k, &v) in &model {
                let got = t.find(hash_of(k), |x| keys[&x] == k).map(|at| t.get(at));
                prop_assert_eq!(got, Some(v));
            }
            let mut held: Vec<u32> = t.iter().collect();
            let mut want: Vec<u32> = model.values().copied().collect();
            held.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(held, want);
        }
    }

    /// A full run that wraps past the end of the entries: removing its
    /// first value keeps the values after the wrap reachable.
    #[test]
    fn removal_in_a_run_that_wraps() {
        let mut t = PendingTable::default();
        // CAPACITY_MIN = 16 entries; 8 values homed at 14 (tag 14).
        let h = |n: u64| (14 | n << 8) << 32;
        let keys: Vec<u64> = (0..8).map(h).collect();
        for (v, &k) in keys.iter().enumerate() {
            t.insert_unique(k, v as u32);
        }
        assert_eq!(t.entries.len(), 16);
        let at = t.find(keys[0], |v| v == 0).expect("held");
        t.remove(at);
        for (v, &k) in keys.iter().enumerate().skip(1) {
            let at = t.find(k, |x| x == v as u32).expect("still reachable");
            assert_eq!(t.get(at), v as u32);
        }
        assert!(t.find(keys[0], |v| v == 0).is_none());
        assert_eq!(t.len(), 7);
    }
}
