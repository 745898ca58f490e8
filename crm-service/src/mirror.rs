//! What applying a mirrored (ERP-owned) change reports back to the bridge.

/// The outcome of a version-gated apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// True when the mirror changed; false for a duplicate or stale version.
    pub changed: bool,
    /// The source version stored after the call.
    pub current_version: i64,
}
