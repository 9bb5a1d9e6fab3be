//! A fixed set of mutex-guarded maps chosen by key hash, so unrelated keys rarely contend.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

/// `N` independently locked values of `T`.
pub(crate) struct Shards<T> {
    shards: Box<[Mutex<T>]>,
    hasher: RandomState,
}

impl<T: Default> Shards<T> {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            shards: (0..count).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<T> Shards<T> {
    /// Locks the shard that owns `key`. Never held across an `.await`.
    pub(crate) fn lock<K: Hash>(&self, key: &K) -> MutexGuard<'_, T> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        lock(&self.shards[index])
    }

    /// Locks each shard in turn.
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.shards.iter().map(lock)
    }
}

/// A poisoned shard still holds consistent maps: every mutation is a single insert/remove.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
