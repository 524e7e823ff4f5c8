//! Name reservation: one id per pod name (name, namespace, uid, attempt) and
//! per container name (sandbox, name, attempt), as kubelet relies on.

use std::collections::HashMap;
use std::sync::Mutex;

/// A name already held by another object.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("name {name:?} is reserved for {owner}")]
pub(crate) struct NameReserved {
    /// The requested name.
    pub(crate) name: String,
    /// The id holding it.
    pub(crate) owner: String,
}

impl From<NameReserved> for tonic::Status {
    fn from(err: NameReserved) -> Self {
        tonic::Status::already_exists(err.to_string())
    }
}

/// Names → the id holding them.
#[derive(Default)]
pub(crate) struct NameIndex {
    names: Mutex<HashMap<String, String>>,
}

impl NameIndex {
    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Each operation is a single map call: a poisoned map is consistent.
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `name` for `id`; reserving it again for the same id is fine.
    pub(crate) fn reserve(&self, name: &str, id: &str) -> Result<(), NameReserved> {
        let mut names = self.names();
        match names.get(name) {
            Some(owner) if owner != id => Err(NameReserved {
                name: name.to_string(),
                owner: owner.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                names.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Frees `name` if `id` holds it.
    pub(crate) fn release(&self, name: &str, id: &str) {
        let mut names = self.names();
        if names.get(name).is_some_and(|owner| owner == id) {
            names.remove(name);
        }
    }
}

/// The reserved name of a pod sandbox (containerd's layout, so logs read alike).
pub(crate) fn sandbox_name(name: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    format!("{name}_{namespace}_{uid}_{attempt}")
}

/// The reserved name of a container inside the sandbox `sandbox_id`.
pub(crate) fn container_name(sandbox_id: &str, name: &str, attempt: u32) -> String {
    format!("{name}_{sandbox_id}_{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_names_the_holder_and_release_frees() {
        let idx = NameIndex::default();
        let n = sandbox_name("web", "default", "uid-1", 0);
        idx.reserve(&n, "id1").unwrap();
        idx.reserve(&n, "id1").unwrap();
        let err = idx.reserve(&n, "id2").unwrap_err();
        assert_eq!(err.owner, "id1");
        assert!(err.to_string().contains("reserved for id1"), "{err}");
        // Another attempt is another name.
        idx.reserve(&sandbox_name("web", "default", "uid-1", 1), "id2")
            .unwrap();
        // Only the holder can release.
        idx.release(&n, "id2");
        assert!(idx.reserve(&n, "id3").is_err());
        idx.release(&n, "id1");
        idx.reserve(&n, "id3").unwrap();
    }

    #[test]
    fn container_names_are_per_sandbox_and_attempt() {
        assert_ne!(
            container_name("s1", "app", 0),
            container_name("s2", "app", 0)
        );
        assert_ne!(
            container_name("s1", "app", 0),
            container_name("s1", "app", 1)
        );
    }
}
