//! Kafka's `meta.properties`: which cluster and node a data directory belongs to.
//!
//! Written by `sluice format` (Kafka's `kafka-storage format`) or on the first start of an
//! empty directory, and checked on every start: a directory formatted for another cluster or
//! another node id is refused, so a node cannot join a quorum with foreign data.

use std::path::Path;

/// File name inside the data directory (Kafka's).
pub const META_PROPERTIES_FILE_NAME: &str = "meta.properties";

/// What `meta.properties` records (Kafka's version 1 fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    /// KIP-858's directory id (random, per directory).
    pub directory_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "the data directory {dir} belongs to cluster {stored}, not {wanted}; \
         refusing to start (format another directory, or set cluster.id={stored})"
    )]
    OtherCluster {
        dir: String,
        stored: String,
        wanted: String,
    },
    #[error("stored node id {stored} in {dir} does not match node.id {configured}")]
    OtherNode {
        dir: String,
        stored: i32,
        configured: i32,
    },
    #[error("{dir} is already formatted (cluster {stored}); use --ignore-formatted to keep it")]
    AlreadyFormatted { dir: String, stored: String },
}

/// Reads `<dir>/meta.properties`; `None` when the directory was never formatted.
pub fn read(dir: &Path) -> Result<Option<MetaProperties>, MetaError> {
    let path = dir.join(META_PROPERTIES_FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MetaError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let invalid = |reason: &str| MetaError::Invalid {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let props: std::collections::BTreeMap<String, String> =
        crate::config::parse_properties(&text).into_iter().collect();
    let cluster_id = props
        .get("cluster.id")
        .cloned()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("no cluster.id"))?;
    let node_id = props
        .get("node.id")
        .or_else(|| props.get("broker.id"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| invalid("no node.id"))?;
    Ok(Some(MetaProperties {
        cluster_id,
        node_id,
        directory_id: props.get("directory.id").cloned().unwrap_or_default(),
    }))
}

/// Writes `<dir>/meta.properties` durably (temp file, fsync, rename, directory fsync).
pub fn write(dir: &Path, meta: &MetaProperties) -> Result<(), MetaError> {
    let text = format!(
        "#Written by Sluice\nversion=1\ncluster.id={}\nnode.id={}\ndirectory.id={}\n",
        meta.cluster_id, meta.node_id, meta.directory_id
    );
    let path = dir.join(META_PROPERTIES_FILE_NAME);
    write_atomic(&path, text.as_bytes()).map_err(|source| MetaError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Checks a directory against the node's configuration at start. `wanted` is the cluster id
/// the node must belong to, when known (the `cluster.id` property); the stored one is
/// returned so the node can present it to the quorum.
pub fn check(
    dir: &Path,
    node_id: i32,
    wanted: Option<&str>,
) -> Result<Option<MetaProperties>, MetaError> {
    let Some(meta) = read(dir)? else {
        return Ok(None);
    };
    if meta.node_id != node_id {
        return Err(MetaError::OtherNode {
            dir: dir.display().to_string(),
            stored: meta.node_id,
            configured: node_id,
        });
    }
    if let Some(w) = wanted.filter(|w| !w.is_empty()) {
        if w != meta.cluster_id {
            return Err(MetaError::OtherCluster {
                dir: dir.display().to_string(),
                stored: meta.cluster_id,
                wanted: w.to_string(),
            });
        }
    }
    Ok(Some(meta))
}

/// `sluice format`: records the cluster id and node id in an empty (or matching) directory.
pub fn format(
    dir: &Path,
    cluster_id: &str,
    node_id: i32,
    ignore_formatted: bool,
) -> Result<MetaProperties, MetaError> {
    std::fs::create_dir_all(dir).map_err(|source| MetaError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    if let Some(existing) = read(dir)? {
        if ignore_formatted && existing.cluster_id == cluster_id && existing.node_id == node_id {
            return Ok(existing);
        }
        return Err(MetaError::AlreadyFormatted {
            dir: dir.display().to_string(),
            stored: existing.cluster_id,
        });
    }
    let meta = MetaProperties {
        cluster_id: cluster_id.to_string(),
        node_id,
        directory_id: crate::model::kafka_uuid_string(&uuid::Uuid::new_v4()),
    };
    write(dir, &meta)?;
    Ok(meta)
}

/// Records `cluster_id` and `node_id` unless the directory already says exactly that (its
/// directory id is kept). Called whenever the image's cluster id may be new.
pub fn ensure(dir: &Path, cluster_id: &str, node_id: i32) -> Result<(), MetaError> {
    let existing = read(dir)?;
    if existing
        .as_ref()
        .is_some_and(|m| m.cluster_id == cluster_id && m.node_id == node_id)
    {
        return Ok(());
    }
    let directory_id = existing
        .map(|m| m.directory_id)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| crate::model::kafka_uuid_string(&uuid::Uuid::new_v4()));
    write(
        dir,
        &MetaProperties {
            cluster_id: cluster_id.to_string(),
            node_id,
            directory_id,
        },
    )
}

/// Kafka's cluster ids are 16 bytes in URL-safe base64 without padding (22 characters).
pub fn valid_cluster_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_then_check_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let id = crate::model::kafka_uuid_string(&uuid::Uuid::new_v4());
        assert!(valid_cluster_id(&id));
        assert_eq!(check(dir.path(), 1, None).unwrap(), None);
        let m = format(dir.path(), &id, 1, false).unwrap();
        assert_eq!(check(dir.path(), 1, Some(&id)).unwrap(), Some(m.clone()));
        assert!(matches!(
            format(dir.path(), &id, 1, false),
            Err(MetaError::AlreadyFormatted { .. })
        ));
        assert_eq!(format(dir.path(), &id, 1, true).unwrap(), m);
        assert!(matches!(
            check(dir.path(), 2, None),
            Err(MetaError::OtherNode { .. })
        ));
        let other = crate::model::kafka_uuid_string(&uuid::Uuid::new_v4());
        assert!(matches!(
            check(dir.path(), 1, Some(&other)),
            Err(MetaError::OtherCluster { .. })
        ));
    }

    #[test]
    fn reads_a_file_kafka_wrote() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(META_PROPERTIES_FILE_NAME),
            "#\n#Mon Dec 01 10:00:00 UTC 2026\nnode.id=3\ndirectory.id=aBcDeFgHiJkLmNoPqRsTuV\nversion=1\ncluster.id=MkU3OEVBNTcwNTJENDM2Qk\n",
        )
        .unwrap();
        let m = read(dir.path()).unwrap().unwrap();
        assert_eq!(m.node_id, 3);
        assert_eq!(m.cluster_id, "MkU3OEVBNTcwNTJENDM2Qk");
    }
}
