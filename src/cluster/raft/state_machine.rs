//! The state machine: the `MetadataImage`, changed only by `cluster::controller::apply`.
//!
//! Lives on shard 0 (`Rc`, `!Send`). Applying is pure (the controller does no I/O); a
//! snapshot is the serde_json of the image with the last applied log id and membership,
//! written to `<log dir>/<end offset>-<epoch>.checkpoint` (Kafka's snapshot naming) atomically
//! through the storage I/O seam. Only the newest snapshot file is kept.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::cluster::controller;
use crate::cluster::image::MetadataImage;
use crate::storage::StorageIo;

/// Suffix of snapshot files (Kafka: `<20-digit end offset>-<10-digit epoch>.checkpoint`).
pub const SNAPSHOT_FILE_SUFFIX: &str = ".checkpoint";

/// What a snapshot holds, as serde_json (also the bytes sent by InstallSnapshot).
#[derive(Serialize, Deserialize)]
pub struct SnapshotFile {
    pub last_log_id: Option<LogId>,
    pub membership: StoredMembership,
    pub image: MetadataImage,
}

/// Called on shard 0 after every applied entry that changed the image.
pub type ImageCallback = Box<dyn Fn(Arc<MetadataImage>)>;

struct Applied {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The newest snapshot: its metadata and bytes.
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

/// Shared between openraft (which owns the `StateMachine`) and the `MetadataRaft` handle.
pub struct Shared {
    applied: RefCell<Applied>,
    dir: PathBuf,
    io: Rc<dyn StorageIo>,
    on_image: ImageCallback,
}

impl Shared {
    /// The last applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.applied.borrow().image.clone()
    }

    /// Calls the image callback (at start, with the recovered image).
    pub fn notify(&self, image: Arc<MetadataImage>) {
        (self.on_image)(image)
    }
}

/// openraft's state machine handle (clones share the state).
#[derive(Clone)]
pub struct StateMachine {
    shared: Rc<Shared>,
}

impl StateMachine {
    /// Loads the newest snapshot in `dir`, if any; else starts from `initial`.
    pub async fn open(
        dir: &Path,
        io: Rc<dyn StorageIo>,
        initial: Arc<MetadataImage>,
        on_image: ImageCallback,
    ) -> io::Result<StateMachine> {
        let mut applied = Applied {
            image: initial,
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
        };
        if let Some(name) = newest_snapshot(&*io, dir).await? {
            let Some(bytes) = io.read_file(&dir.join(&name)).await? else {
                return Err(io::Error::other(format!("snapshot {name} vanished")));
            };
            let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("snapshot {name}: {e}"))
            })?;
            let meta = SnapshotMeta {
                last_log_id: file.last_log_id,
                last_membership: file.membership.clone(),
            };
            applied.image = Arc::new(file.image);
            applied.last_applied = file.last_log_id;
            applied.membership = file.membership;
            applied.snapshot = Some((meta, bytes));
            tracing::info!(snapshot = %name, "metadata snapshot loaded");
        }
        Ok(StateMachine {
            shared: Rc::new(Shared {
                applied: RefCell::new(applied),
                dir: dir.to_path_buf(),
                io,
                on_image,
            }),
        })
    }

    pub fn shared(&self) -> Rc<Shared> {
        self.shared.clone()
    }

    fn apply_one(&self, entry: &super::types::Entry) -> Option<super::types::CommandReply> {
        let mut applied = self.shared.applied.borrow_mut();
        applied.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Membership(membership) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                None
            }
            EntryPayload::Normal(cmd) => match controller::apply(&applied.image, cmd) {
                Ok((next, outcome)) => {
                    applied.image = Arc::new(next);
                    Some(Ok(outcome))
                }
                Err(err) => Some(Err(err)),
            },
        }
    }

    async fn write_snapshot(&self, meta: &SnapshotMeta, bytes: Vec<u8>) -> io::Result<()> {
        let name = snapshot_file_name(meta.last_log_id.as_ref());
        let dir = &self.shared.dir;
        self.shared
            .io
            .write_file_atomic(&dir.join(&name), bytes)
            .await?;
        // Older snapshots are obsolete once the new one is durable.
        for old in self.shared.io.list_dir(dir).await? {
            if old.ends_with(SNAPSHOT_FILE_SUFFIX) && old != name {
                self.shared.io.remove_file(&dir.join(old)).await?;
            }
        }
        self.shared.io.sync_dir(dir).await
    }
}

/// `<20-digit end offset>-<10-digit epoch>.checkpoint`: end offset = last index + 1.
pub fn snapshot_file_name(last: Option<&LogId>) -> String {
    let (end, epoch) = last.map_or((0, 0), |l| (l.index + 1, l.leader_id.term));
    format!("{end:020}-{epoch:010}{SNAPSHOT_FILE_SUFFIX}")
}

async fn newest_snapshot(io: &dyn StorageIo, dir: &Path) -> io::Result<Option<String>> {
    let mut names: Vec<String> = io
        .list_dir(dir)
        .await?
        .into_iter()
        .filter(|n| n.ends_with(SNAPSHOT_FILE_SUFFIX))
        .collect();
    // Zero-padded: the lexical order is the offset order.
    names.sort();
    Ok(names.pop())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.shared.applied.borrow();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin,
    {
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            let before = self.shared.image();
            let reply = self.apply_one(&entry);
            let after = self.shared.image();
            if !Arc::ptr_eq(&before, &after) {
                (self.shared.on_image)(after);
            }
            if let Some(responder) = responder {
                // Blank and membership entries answer with an empty success.
                responder.send(reply.unwrap_or(Ok(controller::Outcome::Done)));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let file: SnapshotFile = serde_json::from_slice(&snapshot).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("installed snapshot: {e}"),
            )
        })?;
        self.write_snapshot(meta, snapshot.clone()).await?;
        let image = Arc::new(file.image);
        {
            let mut applied = self.shared.applied.borrow_mut();
            applied.image = image.clone();
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied.snapshot = Some((meta.clone(), snapshot));
        }
        (self.shared.on_image)(image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let applied = self.shared.applied.borrow();
        Ok(applied.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: bytes.clone(),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, bytes) = {
            let applied = self.shared.applied.borrow();
            let file = SnapshotFile {
                last_log_id: applied.last_applied,
                membership: applied.membership.clone(),
                image: (*applied.image).clone(),
            };
            let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
            };
            (meta, bytes)
        };
        self.write_snapshot(&meta, bytes.clone()).await?;
        self.shared.applied.borrow_mut().snapshot = Some((meta.clone(), bytes.clone()));
        tracing::info!(last = ?meta.last_log_id, "metadata snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}
