//! Incremental fetch sessions (KIP-227), cached per shard.
//!
//! A client's connection stays on the shard that accepted it, so its session
//! lives there. When the cache is full the least recently used session is
//! evicted; its client gets FETCH_SESSION_ID_NOT_FOUND and starts a new one.

use std::collections::HashMap;
use std::time::Instant;

use indexmap::IndexMap;

use crate::model::TopicPartition;

#[derive(Clone, Debug)]
pub struct SessionPartition {
    pub topic_id: uuid::Uuid,
    pub fetch_offset: i64,
    pub max_bytes: usize,
    pub current_leader_epoch: i32,
    /// The epoch of the last batch a follower holds (v12+; -1 from consumers).
    pub last_fetched_epoch: i32,
    /// What the client last heard, to decide whether to include the partition.
    pub last_high_watermark: i64,
    pub last_log_start_offset: i64,
}

pub struct FetchSession {
    pub epoch: i32,
    pub partitions: IndexMap<TopicPartition, SessionPartition>,
    last_used: Instant,
}

pub struct FetchSessions {
    slots: usize,
    sessions: HashMap<i32, FetchSession>,
    next_id: i32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
}

impl FetchSessions {
    pub fn new(slots: usize) -> FetchSessions {
        FetchSessions {
            slots,
            sessions: HashMap::new(),
            next_id: 1,
        }
    }

    pub fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// Creates a session holding `partitions`; returns its id, or 0 when sessions are disabled.
    pub fn create(&mut self, partitions: IndexMap<TopicPartition, SessionPartition>) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        if self.sessions.len() >= self.slots {
            if let Some((&oldest, _)) = self.sessions.iter().min_by_key(|(_, s)| s.last_used) {
                self.sessions.remove(&oldest);
            }
        }
        let id = self.next_id;
        self.next_id = if self.next_id == i32::MAX {
            1
        } else {
            self.next_id + 1
        };
        self.sessions.insert(
            id,
            FetchSession {
                epoch: 1,
                partitions,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Checks the epoch of an incremental request and advances it.
    pub fn begin_incremental(
        &mut self,
        id: i32,
        epoch: i32,
    ) -> Result<&mut FetchSession, SessionError> {
        let s = self.sessions.get_mut(&id).ok_or(SessionError::NotFound)?;
        if s.epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        s.epoch = if s.epoch == i32::MAX { 1 } else { s.epoch + 1 };
        s.last_used = Instant::now();
        Ok(s)
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut FetchSession> {
        self.sessions.get_mut(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_eviction() {
        let mut s = FetchSessions::new(1);
        let a = s.create(IndexMap::new());
        assert!(s.begin_incremental(a, 1).is_ok());
        assert_eq!(
            s.begin_incremental(a, 1).err(),
            Some(SessionError::InvalidEpoch)
        );
        assert!(s.begin_incremental(a, 2).is_ok());
        let b = s.create(IndexMap::new());
        assert_ne!(a, b);
        assert_eq!(
            s.begin_incremental(a, 3).err(),
            Some(SessionError::NotFound)
        );
    }
}
