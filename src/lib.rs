//! Sluice: a Kafka-compatible streaming broker. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod group;
pub mod handler;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod net;
pub mod order;
pub mod protocol;
pub mod replica;
pub mod runtime;
pub mod storage;
pub mod txn;
