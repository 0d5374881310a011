//! One resolver per daemon: storage roots opened once, and one object-store client per bucket shared by
//! everything that reads it.

use crate::{Destination, Endpoint, StorageError};
use object_store::ObjectStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Opens storage roots: for writing (an exporter's endpoint, with its settings) and for reading (a root
/// the catalog names). A bucket's client is made by the first component that opens it for writing —
/// with that component's credentials — and reused by every reader of that bucket in the daemon.
#[derive(Default)]
pub struct Storage {
    /// Object stores by bucket URL (`s3://bucket`, `gs://bucket`, `az://container`).
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// Roots opened for reading, by root URL.
    readers: Mutex<HashMap<String, Arc<Destination>>>,
}

impl Storage {
    /// Opens `endpoint` for writing (a local directory is created). No request is made: an unreachable
    /// store shows when files are stored, which is retried.
    pub fn open(
        &self,
        endpoint: &Endpoint,
        options: &BTreeMap<String, String>,
    ) -> Result<Arc<Destination>, StorageError> {
        let d = Destination::open(endpoint, options)?;
        let (url, store) = d.store();
        if url != "file://" {
            self.lock_buckets().entry(url).or_insert(store);
        }
        Ok(Arc::new(d))
    }

    /// Opens a root recorded in the catalog for reading, once: through the client of a writer of the same
    /// bucket in this daemon when there is one, else with `options` (on top of the standard AWS_,
    /// GOOGLE_ and AZURE_ environment variables).
    pub fn open_for_reading(
        &self,
        root: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Arc<Destination>, StorageError> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = readers.get(root) {
            return Ok(d.clone());
        }
        let mut d = Destination::open_for_reading(root, options)?;
        let (url, store) = d.store();
        if url != "file://" {
            let shared = self.lock_buckets().entry(url).or_insert(store).clone();
            d = d.with_store(shared);
        }
        let d = Arc::new(d);
        readers.insert(root.to_string(), d.clone());
        Ok(d)
    }

    fn lock_buckets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ObjectStore>>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_the_client_a_writer_opened_for_the_same_bucket() {
        let storage = Storage::default();
        let opts = BTreeMap::from([("aws_region".to_string(), "eu-west-1".to_string())]);
        let writer = storage.open(&Endpoint::parse("s3://bucket/edge/a", &opts).unwrap(), &opts).unwrap();
        let reader = storage.open_for_reading("s3://bucket/edge/b", &BTreeMap::new()).unwrap();
        assert!(Arc::ptr_eq(&writer.store().1, &reader.store().1), "one client per bucket");
        assert!(Arc::ptr_eq(&reader, &storage.open_for_reading("s3://bucket/edge/b", &BTreeMap::new()).unwrap()));
        let other = storage.open_for_reading("s3://elsewhere", &opts).unwrap();
        assert!(!Arc::ptr_eq(&writer.store().1, &other.store().1));
    }
}
