//! Where the ingestion thread leaves the newest snapshot for the dashboard.

use std::sync::{Arc, Mutex};

use super::Snapshot;

/// Where the ingestion thread leaves the newest snapshot for the UI.
///
/// A lock held only to swap or clone an `Arc`: publishing never waits for a
/// frame to be drawn, and the UI only ever sees whole snapshots.
#[derive(Debug)]
pub struct Mailbox(Mutex<Arc<Snapshot>>);

impl Mailbox {
    /// A mailbox holding `first`.
    pub fn new(first: Arc<Snapshot>) -> Self {
        Self(Mutex::new(first))
    }

    /// Replaces the snapshot.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
