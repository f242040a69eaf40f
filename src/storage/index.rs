//! Sparse offset and time indexes of one segment, in memory; their file formats are defined here.
//!
//! `.index`: 8-byte entries, big-endian `u32 relative offset` (offset - segment base offset),
//! `u32 file position` of the batch in the `.log`. An entry is added every `index.interval.bytes`
//! of appended data, pointing at the first batch appended after the interval elapsed; its offset
//! is that batch's last offset, as in Kafka (`LogSegment.append`), so Kafka's tools agree.
//! `.timeindex`: 12-byte entries, big-endian `i64 timestamp`, `u32 relative offset`: the largest
//! timestamp seen so far in the segment and the last offset of the batch holding it; added with
//! the offset entries when the timestamp grew, and once more when the segment is sealed.
//! Both are strictly increasing; a file is read up to the first entry that is not (the zero
//! padding of a preallocated index ends it).

/// Bytes of one `.index` entry.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Offset index entries: (relative offset, position).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }
    /// Appends an entry; both fields must grow (the first entry may be (0, 0)).
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some((last_offset, last_position)) = self.last() {
            assert!(relative_offset > last_offset && position > last_position);
        }
        self.entries.push((relative_offset, position));
    }
    /// The entry with the largest relative offset <= `relative_offset`, or (0, 0).
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let at = self.entries.partition_point(|e| e.0 <= relative_offset);
        if at == 0 {
            (0, 0)
        } else {
            self.entries[at - 1]
        }
    }
    /// The relative offset of the entry at `position`, if there is one.
    pub fn offset_at_position(&self, position: u32) -> Option<u32> {
        let at = self.entries.partition_point(|e| e.1 < position);
        self.entries
            .get(at)
            .filter(|e| e.1 == position)
            .map(|e| e.0)
    }
    /// The relative offset of the first entry at or after `position`, if any.
    pub fn first_at_or_after(&self, position: u32) -> Option<u32> {
        let at = self.entries.partition_point(|e| e.1 < position);
        self.entries.get(at).map(|e| e.0)
    }
    /// Drops entries whose relative offset is >= `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let at = self.entries.partition_point(|e| e.0 < relative_offset);
        self.entries.truncate(at);
    }
    /// The last entry whose position is < `position` (what `truncate_to_position` keeps).
    pub fn last_below_position(&self, position: u32) -> Option<(u32, u32)> {
        let at = self.entries.partition_point(|e| e.1 < position);
        at.checked_sub(1).map(|i| self.entries[i])
    }
    /// Drops entries whose position is >= `position`.
    pub fn truncate_to_position(&mut self, position: u32) {
        let at = self.entries.partition_point(|e| e.1 < position);
        self.entries.truncate(at);
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_INDEX_ENTRY_BYTES);
        for (offset, position) in &self.entries {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }
    pub fn decode(bytes: &[u8]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let offset = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let grows = match index.last() {
                Some((o, p)) => offset > o && position > p,
                None => true,
            };
            if !grows {
                break;
            }
            index.entries.push((offset, position));
        }
        index
    }
}

/// Time index entries: (max timestamp so far, relative offset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }
    /// Appends when `timestamp` is larger than the last entry's (and the offset grows).
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        match self.last() {
            Some((ts, offset)) if timestamp <= ts || relative_offset <= offset => {}
            _ => self.entries.push((timestamp, relative_offset)),
        }
    }
    /// The entry with the largest timestamp <= `timestamp`.
    pub fn lookup(&self, timestamp: i64) -> Option<(i64, u32)> {
        let at = self.entries.partition_point(|e| e.0 <= timestamp);
        if at == 0 {
            None
        } else {
            Some(self.entries[at - 1])
        }
    }
    /// The last entry whose relative offset is < `relative_offset` (what `truncate_to_offset`
    /// keeps).
    pub fn last_below_offset(&self, relative_offset: u32) -> Option<(i64, u32)> {
        let at = self.entries.partition_point(|e| e.1 < relative_offset);
        at.checked_sub(1).map(|i| self.entries[i])
    }
    /// Drops entries whose relative offset is >= `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let at = self.entries.partition_point(|e| e.1 < relative_offset);
        self.entries.truncate(at);
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_BYTES);
        for (timestamp, offset) in &self.entries {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }
    pub fn decode(bytes: &[u8]) -> TimeIndex {
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let timestamp = i64::from_be_bytes(ts);
            let offset = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            let grows = match index.last() {
                Some((t, o)) => timestamp > t && offset > o,
                None => timestamp > 0 || offset > 0,
            };
            if !grows {
                break;
            }
            index.entries.push((timestamp, offset));
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_at_boundaries() {
        let mut index = OffsetIndex::default();
        index.append(0, 0);
        index.append(10, 4096);
        index.append(20, 8192);
        assert_eq!(index.lookup(0), (0, 0));
        assert_eq!(index.lookup(9), (0, 0));
        assert_eq!(index.lookup(10), (10, 4096));
        assert_eq!(index.lookup(19), (10, 4096));
        assert_eq!(index.lookup(1000), (20, 8192));
        let decoded = OffsetIndex::decode(&[index.encode(), vec![0; 64]].concat());
        assert_eq!(decoded, index);
        index.truncate_to_offset(15);
        assert_eq!(index.len(), 2);
        index.truncate_to_position(4096);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn time_lookup_at_boundaries() {
        let mut index = TimeIndex::default();
        index.maybe_append(100, 0);
        index.maybe_append(100, 5); // not larger: skipped
        index.maybe_append(200, 10);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(99), None);
        assert_eq!(index.lookup(100), Some((100, 0)));
        assert_eq!(index.lookup(199), Some((100, 0)));
        assert_eq!(index.lookup(200), Some((200, 10)));
        assert_eq!(index.lookup(i64::MAX), Some((200, 10)));
        let decoded = TimeIndex::decode(&[index.encode(), vec![0; 24]].concat());
        assert_eq!(decoded, index);
    }
}
