//! The group coordinator's side of an end-transaction marker on `__consumer_offsets`: the
//! transactional offsets of `producer_id` become visible (commit) or are dropped (abort).
//! Called by WriteTxnMarkers after the marker is appended, on the shard that owns the
//! partition. An empty stub here; the txngroup work fills it in.

use std::rc::Rc;

use crate::runtime::Shard;

/// A marker for `producer_id` was appended to `__consumer_offsets` partition `partition`.
pub fn txn_marker_written(_shard: &Rc<Shard>, _partition: i32, _producer_id: i64, _commit: bool) {}
