//! Placeholder: the reconstructor is being written (see trace/mod.rs).

/// Rebuilds per-thread open stacks from raw events.
#[derive(Debug, Default)]
pub struct Reconstructor {}
