//! A fault-injecting, in-memory implementation of the I/O seam, for tests of the storage layer
//! (and of the broker above it), in the spirit of TigerBeetle's simulated storage.
//!
//! What it models:
//! - **File data**: two images per file, what was written and what `fdatasync` made durable.
//!   `truncate` changes only the written image (a size change is durable once the file is
//!   fdatasync'ed, as `fdatasync` flushes the metadata needed to read the data back).
//! - **Directory entries**: two namespaces, the current one and the durable one. `open(create)`,
//!   `rename`, `remove_file`, `create_dir_all` and `remove_dir_all` change the current one only;
//!   `sync_dir(d)` makes the entries of `d` durable. A directory created by `create_dir_all` must
//!   itself be synced in its parent, or a power cut loses it with everything in it (directories
//!   the layer never created, such as the data directory, are assumed durable).
//! - **Power cuts**: [`FaultyIo::crash`] replaces the current namespace and every file's data by
//!   their durable images.
//! - **fsync errors** ("fsyncgate"): after a failed `fdatasync` the writes made since the last
//!   good one are lost: they read back as they were before (zeros where the file grew), and a
//!   later successful `fdatasync` does not bring them back.
//!   [`FaultyIo::fail_next_fsync`] fails one fdatasync then lets the next ones succeed;
//!   [`FaultyIo::set_fsync_fails`] fails every one while set.
//! - **Write errors**: EIO, ENOSPC, short and torn writes to direct files.
//! - **Interleavings**: with [`FaultyIo::with_yields`], every operation first yields to the
//!   executor zero to three times, drawn from a seeded RNG, so other tasks run while the
//!   operation is "in flight" (its effect happens after the yields). A fake that never yields
//!   tests nothing concurrent.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::file_names;
use super::io::{parent_of, DiskSpace, FileKind, IoBuffer, IoFile, IoFuture, StorageIo};

/// Alignment the fake direct files require, like a 4 KiB-sector device.
pub const FAKE_DIRECT_ALIGNMENT: u64 = 4096;
/// Most yields before one operation takes effect.
pub const YIELDS_PER_OPERATION_MAX: u64 = 3;

/// What the next data write (to a direct file) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// Fails with EIO, writing nothing.
    Eio,
    /// Fails with ENOSPC, writing nothing.
    Enospc,
    /// Writes only the first `n` bytes and reports a short write.
    Short(usize),
    /// Writes only the first `n` bytes, then fails with EIO (a torn write).
    Torn(usize),
}

#[derive(Default)]
struct MemFile {
    data: RefCell<Vec<u8>>,
    durable: RefCell<Vec<u8>>,
}

impl MemFile {
    fn write(&self, pos: usize, bytes: &[u8]) {
        let mut data = self.data.borrow_mut();
        if data.len() < pos + bytes.len() {
            data.resize(pos + bytes.len(), 0);
        }
        data[pos..pos + bytes.len()].copy_from_slice(bytes);
    }

    /// A failed fdatasync: what was written since the last good one is gone. It reads back as
    /// it was before (zeros where the file grew), the way ext4 returns zeros for blocks whose
    /// unwritten-extent conversion failed, and no later fdatasync brings it back.
    fn lose_unsynced(&self) {
        let durable = self.durable.borrow();
        let mut data = self.data.borrow_mut();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = durable.get(i).copied().unwrap_or(0);
        }
    }

    /// A successful fdatasync.
    fn make_durable(&self) {
        let image = self.data.borrow().clone();
        *self.durable.borrow_mut() = image;
    }
}

#[derive(Default)]
struct State {
    /// The namespace as it is now.
    files: BTreeMap<PathBuf, Rc<MemFile>>,
    /// The namespace as a power cut would leave it.
    durable_files: BTreeMap<PathBuf, Rc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
    durable_dirs: BTreeSet<PathBuf>,
    /// Every directory `create_dir_all` ever created (others are assumed durable).
    created_dirs: BTreeSet<PathBuf>,
    write_faults: VecDeque<WriteFault>,
}

impl State {
    /// Whether every directory above `path` that this layer created is durable.
    fn durably_reachable(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .all(|dir| !self.created_dirs.contains(dir) || self.durable_dirs.contains(dir))
    }
}

/// Seeded RNG for yields (splitmix64: small, and good enough to pick interleavings).
#[derive(Default)]
struct Yields {
    seed: Cell<u64>,
    /// Probability of yielding before an operation, in percent (0 = never).
    percent: Cell<u64>,
    taken: Cell<u64>,
}

impl Yields {
    fn next(&self) -> u64 {
        let mut z = self.seed.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.seed.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn count(&self) -> u64 {
        if self.percent.get() == 0 || self.next() % 100 >= self.percent.get() {
            return 0;
        }
        1 + self.next() % YIELDS_PER_OPERATION_MAX
    }
}

/// Which fdatasyncs fail.
#[derive(Default)]
struct FsyncFaults {
    always: Cell<bool>,
    /// The next fdatasync of a file of this kind fails once.
    once: Cell<Option<FileKind>>,
}

/// In-memory file system with injectable faults. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FaultyIo {
    state: Rc<RefCell<State>>,
    fsync_faults: Rc<FsyncFaults>,
    yields: Rc<Yields>,
    /// Opens to let through before one fails: `Some(n)`.
    fail_open_after: Rc<Cell<Option<u32>>>,
    disk_space: Rc<Cell<Option<DiskSpace>>>,
    direct_writes: Rc<Cell<u64>>,
    fsyncs: Rc<Cell<u64>>,
    dir_syncs: Rc<Cell<u64>>,
    /// Set by `power_cut`: every later operation through this instance fails.
    dead: Rc<Cell<bool>>,
}

impl FaultyIo {
    /// A layer that never yields.
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }
    /// A layer that yields before an operation with probability `percent`/100 (one to
    /// `YIELDS_PER_OPERATION_MAX` times), drawn from an RNG seeded with `seed`.
    pub fn with_yields(seed: u64, percent: u64) -> FaultyIo {
        let io = FaultyIo::default();
        io.set_yields(seed, percent);
        io
    }
    /// Starts (or changes) seeded yields, as `with_yields` does.
    pub fn set_yields(&self, seed: u64, percent: u64) {
        self.yields.seed.set(seed);
        self.yields.percent.set(percent.min(100));
    }
    /// Queues a fault for the next write to a direct (segment) file.
    pub fn inject_write_fault(&self, fault: WriteFault) {
        self.state.borrow_mut().write_faults.push_back(fault);
    }
    /// Makes every fdatasync fail with EIO while set.
    pub fn set_fsync_fails(&self, fails: bool) {
        self.fsync_faults.always.set(fails);
    }
    /// Fails the next fdatasync of a file of `kind` with EIO, once; later ones succeed (and,
    /// as on Linux, do not bring back the writes lost with the failure).
    pub fn fail_next_fsync(&self, kind: FileKind) {
        self.fsync_faults.once.set(Some(kind));
    }
    /// Lets `after` more opens succeed, then fails one with EIO.
    pub fn fail_open_after(&self, after: u32) {
        self.fail_open_after.set(Some(after));
    }
    /// Sets what `disk_space` reports (default: 1 TiB free of 1 TiB).
    pub fn set_disk_space(&self, space: DiskSpace) {
        self.disk_space.set(Some(space));
    }
    /// Number of completed writes to direct files.
    pub fn direct_writes(&self) -> u64 {
        self.direct_writes.get()
    }
    /// Number of fdatasync calls.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.get()
    }
    /// Number of directory fsyncs.
    pub fn dir_syncs(&self) -> u64 {
        self.dir_syncs.get()
    }
    /// Number of yields taken so far.
    pub fn yields_taken(&self) -> u64 {
        self.yields.taken.get()
    }
    /// Power cut: the namespace and every file's data fall back to their durable images.
    pub fn crash(&self) {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let files: BTreeMap<PathBuf, Rc<MemFile>> = state
            .durable_files
            .iter()
            .filter(|(path, _)| state.durably_reachable(path))
            .map(|(path, file)| (path.clone(), file.clone()))
            .collect();
        let dirs: BTreeSet<PathBuf> = state
            .durable_dirs
            .iter()
            .filter(|dir| state.durably_reachable(dir))
            .cloned()
            .collect();
        for file in files.values() {
            let durable = file.durable.borrow().clone();
            *file.data.borrow_mut() = durable;
        }
        state.durable_files = files.clone();
        state.files = files;
        state.durable_dirs = dirs.clone();
        state.dirs = dirs;
    }
    /// Power cut while the process runs: this instance (and every file opened through it)
    /// fails all later operations, as the tasks of a dead process would issue none; the
    /// returned instance is the machine after reboot, holding only the durable images (same
    /// yield settings, a new seed).
    pub fn power_cut(&self) -> FaultyIo {
        self.dead.set(true);
        let old = self.state.borrow();
        let mut state = State::default();
        for (path, file) in &old.durable_files {
            if !old.durably_reachable(path) {
                continue;
            }
            let image = file.durable.borrow().clone();
            let copy = Rc::new(MemFile {
                data: RefCell::new(image.clone()),
                durable: RefCell::new(image),
            });
            state.files.insert(path.clone(), copy.clone());
            state.durable_files.insert(path.clone(), copy);
        }
        for dir in old.durable_dirs.iter().filter(|d| old.durably_reachable(d)) {
            state.dirs.insert(dir.clone());
            state.durable_dirs.insert(dir.clone());
        }
        state.created_dirs = old.created_dirs.clone();
        let io = FaultyIo::default();
        *io.state.borrow_mut() = state;
        io.set_yields(self.yields.next(), self.yields.percent.get());
        io
    }
    /// Raw current content of a file (tests use it to corrupt bytes).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        state.files.get(path).map(|f| f.data.borrow().clone())
    }
    /// What a power cut would leave of a file (`None`: its entry is not durable).
    pub fn durable_file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        if !state.durably_reachable(path) {
            return None;
        }
        state
            .durable_files
            .get(path)
            .map(|f| f.durable.borrow().clone())
    }
    /// Replaces a file's content, its entry and content durable as well (tests use it to
    /// corrupt bytes).
    pub fn set_file_bytes(&self, path: &Path, data: Vec<u8>) {
        let mut state = self.state.borrow_mut();
        let file = state.files.entry(path.to_owned()).or_default().clone();
        state.durable_files.insert(path.to_owned(), file.clone());
        *file.durable.borrow_mut() = data.clone();
        *file.data.borrow_mut() = data;
    }
    pub fn exists(&self, path: &Path) -> bool {
        self.state.borrow().files.contains_key(path)
    }
    fn next_fault(&self) -> Option<WriteFault> {
        self.state.borrow_mut().write_faults.pop_front()
    }
    /// The seeded yield before an operation takes effect; then fails if the power was cut
    /// (the process that issued it is gone).
    async fn maybe_yield(&self) -> io::Result<()> {
        for _ in 0..self.yields.count() {
            self.yields.taken.set(self.yields.taken.get() + 1);
            futures_lite::future::yield_now().await;
        }
        if self.dead.get() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
    fn fsync_fails(&self, kind: FileKind) -> bool {
        if self.fsync_faults.always.get() {
            return true;
        }
        if self.fsync_faults.once.get() == Some(kind) {
            self.fsync_faults.once.set(None);
            return true;
        }
        false
    }
}

struct FakeFile {
    io: FaultyIo,
    file: Rc<MemFile>,
    kind: FileKind,
}

impl IoFile for FakeFile {
    fn alignment(&self) -> u64 {
        match self.kind {
            FileKind::Direct => FAKE_DIRECT_ALIGNMENT,
            FileKind::Buffered => 1,
        }
    }
    fn alloc_buffer(&self, size: usize) -> IoBuffer {
        IoBuffer::Heap(vec![0; size])
    }
    fn write_at(&self, buf: IoBuffer, pos: u64) -> IoFuture<'_, usize> {
        Box::pin(async move {
            self.io.maybe_yield().await?;
            let bytes = buf.as_bytes();
            if self.kind == FileKind::Direct {
                let align = FAKE_DIRECT_ALIGNMENT;
                assert!(
                    pos.is_multiple_of(align) && (bytes.len() as u64).is_multiple_of(align),
                    "unaligned direct write"
                );
                match self.io.next_fault() {
                    Some(WriteFault::Eio) => return Err(io::Error::from_raw_os_error(libc::EIO)),
                    Some(WriteFault::Enospc) => {
                        return Err(io::Error::from_raw_os_error(libc::ENOSPC))
                    }
                    Some(WriteFault::Short(n)) => {
                        let n = n.min(bytes.len());
                        self.file.write(pos as usize, &bytes[..n]);
                        return Ok(n);
                    }
                    Some(WriteFault::Torn(n)) => {
                        let n = n.min(bytes.len());
                        self.file.write(pos as usize, &bytes[..n]);
                        return Err(io::Error::from_raw_os_error(libc::EIO));
                    }
                    None => {}
                }
                self.file.write(pos as usize, bytes);
                self.io.direct_writes.set(self.io.direct_writes.get() + 1);
                return Ok(bytes.len());
            }
            self.file.write(pos as usize, bytes);
            Ok(bytes.len())
        })
    }
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Bytes> {
        Box::pin(async move {
            self.io.maybe_yield().await?;
            let data = self.file.data.borrow();
            let start = (pos as usize).min(data.len());
            let end = (start + len).min(data.len());
            Ok(Bytes::copy_from_slice(&data[start..end]))
        })
    }
    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.io.maybe_yield().await?;
            self.io.fsyncs.set(self.io.fsyncs.get() + 1);
            if self.io.fsync_fails(self.kind) {
                self.file.lose_unsynced();
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.file.make_durable();
            Ok(())
        })
    }
    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        // A size change: durable with the next fdatasync of this file, not before.
        Box::pin(async move {
            self.io.maybe_yield().await?;
            self.file.data.borrow_mut().resize(len as usize, 0);
            Ok(())
        })
    }
    fn file_size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move {
            self.io.maybe_yield().await?;
            Ok(self.file.data.borrow().len() as u64)
        })
    }
}

impl StorageIo for FaultyIo {
    fn open<'a>(
        &'a self,
        path: &'a Path,
        kind: FileKind,
        create: bool,
    ) -> IoFuture<'a, Rc<dyn IoFile>> {
        Box::pin(async move {
            self.maybe_yield().await?;
            match self.fail_open_after.get() {
                Some(0) => {
                    self.fail_open_after.set(None);
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                Some(n) => self.fail_open_after.set(Some(n - 1)),
                None => {}
            }
            let mut state = self.state.borrow_mut();
            let file = match state.files.get(path) {
                Some(file) => file.clone(),
                None if create => state.files.entry(path.to_owned()).or_default().clone(),
                None => return Err(io::Error::from(io::ErrorKind::NotFound)),
            };
            let file: Rc<dyn IoFile> = Rc::new(FakeFile {
                io: self.clone(),
                file,
                kind,
            });
            Ok(file)
        })
    }
    fn create_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.maybe_yield().await?;
            let mut state = self.state.borrow_mut();
            if state.dirs.insert(path.to_owned()) {
                state.created_dirs.insert(path.to_owned());
            }
            Ok(())
        })
    }
    fn remove_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.maybe_yield().await?;
            let mut state = self.state.borrow_mut();
            state.files.retain(|p, _| !p.starts_with(path));
            state.dirs.retain(|p| !p.starts_with(path));
            Ok(())
        })
    }
    fn remove_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.maybe_yield().await?;
            self.state.borrow_mut().files.remove(path);
            Ok(())
        })
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.maybe_yield().await?;
            let mut state = self.state.borrow_mut();
            if let Some(file) = state.files.remove(from) {
                state.files.insert(to.to_path_buf(), file);
            }
            Ok(())
        })
    }
    fn list_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Vec<String>> {
        Box::pin(async move {
            self.maybe_yield().await?;
            let state = self.state.borrow();
            let names = state
                .files
                .keys()
                .filter(|p| p.parent() == Some(path))
                .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
                .collect();
            Ok(names)
        })
    }
    fn read_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.maybe_yield().await?;
            Ok(self.file_bytes(path))
        })
    }
    fn write_file_atomic<'a>(&'a self, path: &'a Path, data: Vec<u8>) -> IoFuture<'a, ()> {
        // The same steps as the real one, so each can yield or fail.
        Box::pin(async move {
            let tmp = file_names::tmp_path(path);
            let file = self.open(&tmp, FileKind::Buffered, true).await?;
            file.truncate(0).await?;
            let len = data.len();
            if len > 0 && file.write_at(IoBuffer::Heap(data), 0).await? != len {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
            }
            file.fdatasync().await?;
            self.rename(&tmp, path).await?;
            self.sync_dir(parent_of(path)).await
        })
    }
    fn sync_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.maybe_yield().await?;
            self.dir_syncs.set(self.dir_syncs.get() + 1);
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let in_dir = |p: &Path| p.parent() == Some(path);
            // Subdirectories removed since the last sync take their durable files with them.
            let removed: Vec<PathBuf> = state
                .durable_dirs
                .iter()
                .filter(|d| in_dir(d) && !state.dirs.contains(*d))
                .cloned()
                .collect();
            for dir in &removed {
                state.durable_files.retain(|p, _| !p.starts_with(dir));
                state.durable_dirs.retain(|d| !d.starts_with(dir));
            }
            state.durable_files.retain(|p, _| !in_dir(p));
            for (p, file) in state.files.iter().filter(|(p, _)| in_dir(p)) {
                state.durable_files.insert(p.clone(), file.clone());
            }
            for dir in state.dirs.iter().filter(|d| in_dir(d)) {
                state.durable_dirs.insert(dir.clone());
            }
            Ok(())
        })
    }
    fn disk_space<'a>(&'a self, _path: &'a Path) -> IoFuture<'a, DiskSpace> {
        Box::pin(async move {
            self.maybe_yield().await?;
            Ok(self.disk_space.get().unwrap_or(DiskSpace {
                capacity_bytes: 1 << 40,
                free_bytes: 1 << 40,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_util::run;

    fn path(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn entries_and_sizes_are_durable_only_once_synced() {
        run(|| async {
            let io = FaultyIo::new();
            let dir = path("/d/p");
            io.create_dir_all(&dir).await.expect("mkdir");
            let a = dir.join("a");
            let file = io.open(&a, FileKind::Buffered, true).await.expect("open");
            file.write_at(IoBuffer::Heap(vec![1; 100]), 0)
                .await
                .expect("write");
            file.fdatasync().await.expect("fsync");
            io.sync_dir(&dir).await.expect("sync dir");
            io.crash();
            assert!(
                !io.exists(&a),
                "the directory was never synced in its parent"
            );

            io.create_dir_all(&dir).await.expect("mkdir");
            io.sync_dir(parent_of(&dir)).await.expect("sync parent");
            let file = io.open(&a, FileKind::Buffered, true).await.expect("open");
            file.write_at(IoBuffer::Heap(vec![1; 100]), 0)
                .await
                .expect("write");
            file.fdatasync().await.expect("fsync");
            io.crash();
            assert!(
                !io.exists(&a),
                "the entry was never synced in its directory"
            );

            let file = io.open(&a, FileKind::Buffered, true).await.expect("open");
            file.write_at(IoBuffer::Heap(vec![1; 100]), 0)
                .await
                .expect("write");
            file.fdatasync().await.expect("fsync");
            io.sync_dir(&dir).await.expect("sync dir");
            file.truncate(10).await.expect("truncate");
            io.rename(&a, &dir.join("b")).await.expect("rename");
            io.crash();
            assert_eq!(
                io.file_bytes(&a).map(|b| b.len()),
                Some(100),
                "neither the rename nor the truncate was synced"
            );
            assert!(!io.exists(&dir.join("b")));
        });
    }

    #[test]
    fn a_failed_fsync_loses_the_writes_before_it() {
        run(|| async {
            let io = FaultyIo::new();
            let a = path("/a");
            let file = io.open(&a, FileKind::Direct, true).await.expect("open");
            io.sync_dir(Path::new("/")).await.expect("sync");
            file.write_at(IoBuffer::Heap(vec![1; 4096]), 0)
                .await
                .expect("write");
            file.fdatasync().await.expect("fsync");
            file.write_at(IoBuffer::Heap(vec![2; 4096]), 4096)
                .await
                .expect("write");
            io.fail_next_fsync(FileKind::Direct);
            file.fdatasync().await.expect_err("fails once");
            file.write_at(IoBuffer::Heap(vec![3; 4096]), 8192)
                .await
                .expect("write");
            file.fdatasync().await.expect("then succeeds");
            assert!(
                io.file_bytes(&a).expect("file")[4096..8192]
                    .iter()
                    .all(|b| *b == 0),
                "lost at once"
            );
            let durable = io.durable_file_bytes(&a).expect("durable");
            assert_eq!(durable.len(), 3 * 4096);
            assert!(durable[..4096].iter().all(|b| *b == 1));
            assert!(
                durable[4096..8192].iter().all(|b| *b == 0),
                "not made durable by the later success"
            );
            assert!(durable[8192..].iter().all(|b| *b == 3));
        });
    }

    #[test]
    fn yields_are_seeded() {
        run(|| async {
            let count = |seed| async move {
                let io = FaultyIo::with_yields(seed, 50);
                for _ in 0..100 {
                    io.list_dir(Path::new("/")).await.expect("list");
                }
                io.yields_taken()
            };
            let first = count(7).await;
            assert!(first > 0);
            assert_eq!(count(7).await, first);
        });
    }
}
