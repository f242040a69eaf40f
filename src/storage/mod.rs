//! The partition log (owned by the storage work; see ARCHITECTURE.md).
