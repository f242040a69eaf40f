//! The metadata quorum: openraft 0.10 on shard 0's glommio executor.
//!
//! Lives on shard 0 (`Rc`, `!Send`). See ARCHITECTURE.md (`cluster/raft/`) for the pieces.

pub mod rt;

pub use rt::GlommioRuntime;
