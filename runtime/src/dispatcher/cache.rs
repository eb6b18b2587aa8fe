//! The bounded cache of live executions: an instance found here resumes
//! without replay; one evicted is rebuilt from history when next needed.

use std::collections::{BTreeMap, HashMap};

use crate::replay::Execution;

/// Least-recently-used map from instance id to its live execution.
pub(crate) struct Cache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (u64, Execution)>,
    by_age: BTreeMap<u64, String>,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Removes and returns the execution of `id`.
    pub(crate) fn take(&mut self, id: &str) -> Option<Execution> {
        let (tick, ex) = self.entries.remove(id)?;
        self.by_age.remove(&tick);
        Some(ex)
    }

    /// Keeps `ex` as the most recently used, evicting the least recently
    /// used beyond capacity.
    pub(crate) fn put(&mut self, id: String, ex: Execution) {
        if self.capacity == 0 {
            return;
        }
        self.take(&id);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.tick += 1;
        self.by_age.insert(self.tick, id.clone());
        self.entries.insert(id, (self.tick, ex));
    }

    /// Whether a live execution of `id` is held.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// The highest message sequence number the held execution of `id`
    /// has consumed.
    pub(crate) fn consumed_through(&self, id: &str) -> Option<u64> {
        self.entries.get(id).and_then(|(_, ex)| ex.consumed_through)
    }

    /// The number of live executions held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = Cache::new(2);
        c.put("a".into(), Execution::new("a"));
        c.put("b".into(), Execution::new("b"));
        let a = c.take("a").expect("a is cached");
        c.put("a".into(), a);
        c.put("c".into(), Execution::new("c"));
        assert_eq!(c.len(), 2);
        assert!(c.take("b").is_none(), "b was least recently used");
        assert!(c.take("a").is_some());
        assert!(c.take("c").is_some());
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut c = Cache::new(0);
        c.put("a".into(), Execution::new("a"));
        assert!(c.take("a").is_none());
    }
}
