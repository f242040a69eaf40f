//! A fault-injecting, in-memory implementation of the I/O seam, for tests of the storage layer
//! (and of the broker above it). Files keep two images: what was written, and what was made
//! durable by `fdatasync`. [`FaultyIo::crash`] drops every byte that was not made durable, the way
//! a power cut would. Writes can be made to fail (EIO, ENOSPC), come back short, or tear.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::io::{DiskSpace, FileKind, IoBuffer, IoFile, IoFuture, StorageIo};

/// Alignment the fake direct files require, like a 4 KiB-sector device.
pub const FAKE_DIRECT_ALIGNMENT: u64 = 4096;

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

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, Rc<MemFile>>,
    dirs: BTreeMap<PathBuf, ()>,
    write_faults: VecDeque<WriteFault>,
}

/// In-memory file system with injectable faults. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FaultyIo {
    state: Rc<RefCell<State>>,
    fail_fsync: Rc<Cell<bool>>,
    /// Opens to let through before one fails: `Some(n)`.
    fail_open_after: Rc<Cell<Option<u32>>>,
    disk_space: Rc<Cell<Option<DiskSpace>>>,
    direct_writes: Rc<Cell<u64>>,
    fsyncs: Rc<Cell<u64>>,
}

impl FaultyIo {
    pub fn new() -> FaultyIo {
        FaultyIo::default()
    }
    /// Queues a fault for the next write to a direct (segment) file.
    pub fn inject_write_fault(&self, fault: WriteFault) {
        self.state.borrow_mut().write_faults.push_back(fault);
    }
    /// Makes every fdatasync fail with EIO while set.
    pub fn set_fsync_fails(&self, fails: bool) {
        self.fail_fsync.set(fails);
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
    /// Power cut: every file loses what was not made durable.
    pub fn crash(&self) {
        let state = self.state.borrow();
        for file in state.files.values() {
            let durable = file.durable.borrow().clone();
            *file.data.borrow_mut() = durable;
        }
    }
    /// Raw current content of a file (tests use it to corrupt bytes).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        state.files.get(path).map(|f| f.data.borrow().clone())
    }
    /// Replaces a file's content, durable as well (tests use it to corrupt bytes).
    pub fn set_file_bytes(&self, path: &Path, data: Vec<u8>) {
        let mut state = self.state.borrow_mut();
        let file = state.files.entry(path.to_owned()).or_default();
        *file.durable.borrow_mut() = data.clone();
        *file.data.borrow_mut() = data;
    }
    pub fn exists(&self, path: &Path) -> bool {
        self.state.borrow().files.contains_key(path)
    }
    fn next_fault(&self) -> Option<WriteFault> {
        self.state.borrow_mut().write_faults.pop_front()
    }
}

struct FakeFile {
    io: FaultyIo,
    file: Rc<MemFile>,
    kind: FileKind,
}

fn write_into(data: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    if data.len() < pos + bytes.len() {
        data.resize(pos + bytes.len(), 0);
    }
    data[pos..pos + bytes.len()].copy_from_slice(bytes);
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
            let bytes = buf.as_bytes();
            if self.kind == FileKind::Direct {
                let align = FAKE_DIRECT_ALIGNMENT;
                assert!(
                    pos.is_multiple_of(align) && (bytes.len() as u64).is_multiple_of(align),
                    "unaligned direct write"
                );
                let fault = self.io.next_fault();
                let mut data = self.file.data.borrow_mut();
                match fault {
                    Some(WriteFault::Eio) => return Err(io::Error::from_raw_os_error(libc::EIO)),
                    Some(WriteFault::Enospc) => {
                        return Err(io::Error::from_raw_os_error(libc::ENOSPC))
                    }
                    Some(WriteFault::Short(n)) => {
                        let n = n.min(bytes.len());
                        write_into(&mut data, pos as usize, &bytes[..n]);
                        return Ok(n);
                    }
                    Some(WriteFault::Torn(n)) => {
                        let n = n.min(bytes.len());
                        write_into(&mut data, pos as usize, &bytes[..n]);
                        return Err(io::Error::from_raw_os_error(libc::EIO));
                    }
                    None => {}
                }
                write_into(&mut data, pos as usize, bytes);
                self.io.direct_writes.set(self.io.direct_writes.get() + 1);
                return Ok(bytes.len());
            }
            write_into(&mut self.file.data.borrow_mut(), pos as usize, bytes);
            Ok(bytes.len())
        })
    }
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Bytes> {
        Box::pin(async move {
            let data = self.file.data.borrow();
            let start = (pos as usize).min(data.len());
            let end = (start + len).min(data.len());
            Ok(Bytes::copy_from_slice(&data[start..end]))
        })
    }
    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.io.fsyncs.set(self.io.fsyncs.get() + 1);
            if self.io.fail_fsync.get() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let data = self.file.data.borrow().clone();
            *self.file.durable.borrow_mut() = data;
            Ok(())
        })
    }
    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        // Metadata change: treated as durable at once (the log re-syncs before relying on it).
        Box::pin(async move {
            self.file.data.borrow_mut().resize(len as usize, 0);
            let mut durable = self.file.durable.borrow_mut();
            if durable.len() > len as usize {
                durable.truncate(len as usize);
            }
            Ok(())
        })
    }
    fn file_size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { Ok(self.file.data.borrow().len() as u64) })
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
            self.state.borrow_mut().dirs.insert(path.to_owned(), ());
            Ok(())
        })
    }
    fn remove_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.state.borrow_mut();
            state.files.retain(|p, _| !p.starts_with(path));
            state.dirs.retain(|p, _| !p.starts_with(path));
            Ok(())
        })
    }
    fn remove_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.state.borrow_mut().files.remove(path);
            Ok(())
        })
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.state.borrow_mut();
            if let Some(file) = state.files.remove(from) {
                state.files.insert(to.to_path_buf(), file);
            }
            Ok(())
        })
    }
    fn list_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Vec<String>> {
        Box::pin(async move {
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
        Box::pin(async move { Ok(self.file_bytes(path)) })
    }
    fn write_file_atomic<'a>(&'a self, path: &'a Path, data: Vec<u8>) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.set_file_bytes(path, data);
            Ok(())
        })
    }
    fn sync_dir<'a>(&'a self, _path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }
    fn disk_space<'a>(&'a self, _path: &'a Path) -> IoFuture<'a, DiskSpace> {
        Box::pin(async move {
            Ok(self.disk_space.get().unwrap_or(DiskSpace {
                capacity_bytes: 1 << 40,
                free_bytes: 1 << 40,
            }))
        })
    }
}
