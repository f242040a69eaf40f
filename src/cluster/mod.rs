//! Cluster metadata: an immutable image that every shard receives, and the
//! controller (on shard 0) that changes it. In single-node mode the image is
//! persisted as one file; in cluster mode the controller's commands are entries
//! of the Raft metadata log and the image is its state machine.

pub mod controller;
pub mod image;
pub mod meta;
pub mod placement;
pub mod raft;

pub use controller::{ControllerCommand, ControllerError, Outcome};
pub use image::{BrokerRegistration, MetadataImage, PartitionImage, TopicImage};
