//! The Fx hash (rustc's), now from the `rustc-hash` crate. Kept only as an
//! alias for `live::aggregate`, the last user; it goes once that uses
//! `rustc_hash::FxHashMap` itself.

/// A `HashMap` with the Fx hash (rustc's).
pub(crate) type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;
