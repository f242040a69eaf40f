//! Cluster metadata: an immutable image that every shard receives, and the
//! controller (on shard 0) that changes it. Today the image is persisted as one
//! file on a single node; with replication the controller's commands become
//! entries of an openraft log and the image its state machine.

pub mod controller;
pub mod image;
pub mod raft;

pub use controller::{ControllerCommand, ControllerError};
pub use image::{BrokerImage, MetadataImage, TopicImage};
