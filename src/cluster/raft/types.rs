//! openraft's type configuration for the metadata quorum.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::rt::GlommioRuntime;
use crate::cluster::controller::{ControllerCommand, ControllerError, Outcome};

/// A voter as openraft knows it: where its CONTROLLER listener is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerNode {
    /// `host:port` of the node's CONTROLLER listener.
    pub addr: String,
}

impl fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// What applying one command answers: the outcome, or the validation error (the entry is in
/// the log either way; the image is unchanged on error).
pub type CommandReply = Result<Outcome, ControllerError>;

openraft::declare_raft_types!(
    /// The metadata quorum's openraft types.
    pub TypeConfig:
        D = ControllerCommand,
        R = CommandReply,
        NodeId = u64,
        Node = ControllerNode,
        AsyncRuntime = GlommioRuntime,
);

impl fmt::Display for ControllerCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerCommand::CreateTopic { name, .. } => write!(f, "CreateTopic({name})"),
            ControllerCommand::DeleteTopic { name, .. } => write!(f, "DeleteTopic({name})"),
            ControllerCommand::CreatePartitions { name, .. } => {
                write!(f, "CreatePartitions({name})")
            }
            ControllerCommand::AlterTopicConfigs { name, .. } => {
                write!(f, "AlterTopicConfigs({name})")
            }
            #[allow(unreachable_patterns)]
            other => write!(f, "{other:?}"),
        }
    }
}

use openraft::type_config::alias;

pub type LogId = alias::LogIdOf<TypeConfig>;
pub type Vote = alias::VoteOf<TypeConfig>;
pub type Entry = alias::EntryOf<TypeConfig>;
pub type Membership = openraft::Membership<u64, ControllerNode>;
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its bytes are `state_machine::SnapshotFile`'s serde_json.
pub type Snapshot = alias::SnapshotOf<TypeConfig, Vec<u8>>;
pub type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
