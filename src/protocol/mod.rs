//! Kafka wire protocol, sans I/O: framing, the table of supported APIs, and
//! record-batch validation for Produce. Control-plane messages use the
//! `kafka-protocol` crate (generated from Kafka's JSON specs); record data is
//! never re-encoded: produced batches are validated in place and written as they came.
//!
//! Architecture Invariant: protocol/ does no I/O and knows nothing of shards.

pub mod api;
pub mod frame;
pub mod records;
