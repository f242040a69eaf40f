//! Sluice: a Kafka-compatible streaming broker. See ARCHITECTURE.md for the map.

pub mod model;
pub mod storage;
