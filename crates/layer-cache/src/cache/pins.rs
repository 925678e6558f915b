//! Pins: what a live [`CachedImage`](super::CachedImage) holds so that
//! its entries are not evicted, in this process and in others.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::entries::{Key, Value};
use super::lock;

/// Pin counts, and entries evicted while pinned.
#[derive(Default)]
pub(super) struct Pins {
    pub(super) counts: HashMap<Key, usize>,
    /// Entries moka evicted while pinned: their files stay until the last
    /// pin goes, then they are re-admitted.
    pub(super) evicted: HashMap<Key, Value>,
    /// Unpinned keys of `evicted`, re-admitted at the next async call.
    pub(super) readmit: Vec<Key>,
}

/// Holds pins on entries; unpins on drop. In this process the pin counts
/// keep moka's evictions from deleting files; for other processes sharing
/// the root (which open it after this one closed it, while its containers
/// still run) a shared `flock` on each entry's pin file does.
pub(super) struct PinGuard {
    pins: Arc<Mutex<Pins>>,
    keys: Vec<Key>,
    pins_dir: PathBuf,
    files: Vec<Flock<File>>,
}

impl PinGuard {
    pub(super) fn new(pins: Arc<Mutex<Pins>>, pins_dir: PathBuf) -> Self {
        Self {
            pins,
            keys: Vec::new(),
            pins_dir,
            files: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, key: Key) {
        *lock(&self.pins).counts.entry(key.clone()).or_default() += 1;
        let path = key.pin_file(&self.pins_dir);
        let shared = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| {
                Flock::lock(f, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))
            });
        match shared {
            Ok(file) => self.files.push(file),
            // Pinning against other processes is lost, not this one's.
            Err(e) => tracing::warn!("pin file {}: {e}", path.display()),
        }
        self.keys.push(key);
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = lock(&self.pins);
        for key in self.keys.drain(..) {
            let Some(n) = pins.counts.get_mut(&key) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                pins.counts.remove(&key);
                if pins.evicted.contains_key(&key) {
                    pins.readmit.push(key);
                }
            }
        }
    }
}

/// An exclusive lock on an entry's pin file, `None` when it has none, or
/// `Err` when another process holds it shared (a pin).
pub(super) fn pinned_elsewhere(pin_file: &Path) -> std::result::Result<Option<Flock<File>>, ()> {
    let file = match OpenOptions::new().write(true).open(pin_file) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Err(()),
        Err(_) => Ok(None),
    }
}
