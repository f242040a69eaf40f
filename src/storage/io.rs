//! The one I/O seam of the storage layer. All storage code reaches files through [`StorageIo`] and
//! [`IoFile`]; [`GlommioIo`] is the real implementation (O_DIRECT `DmaFile` for segment data,
//! buffered files for small metadata), `fault_io::FaultyIo` the fault-injecting one for tests.
//!
//! Everything here is `!Send` and lives on the shard (core) that created it.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use glommio::io::{BufferedFile, DmaBuffer, DmaFile, OpenOptions};

use super::file_names;

/// Future returned by every seam operation.
pub type IoFuture<'a, T> = LocalBoxFuture<'a, io::Result<T>>;

/// How a file is opened.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// O_DIRECT: writes must be aligned buffers at aligned positions (segment `.log` files).
    Direct,
    /// Page cache; any position and length (index files).
    Buffered,
}

/// Capacity and free bytes of the volume holding a path.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    pub capacity_bytes: u64,
    pub free_bytes: u64,
}

/// A buffer for [`IoFile::write_at`]: DMA-aligned memory for direct files, a vector otherwise.
pub enum IoBuffer {
    Dma(DmaBuffer),
    Heap(Vec<u8>),
}

impl IoBuffer {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            IoBuffer::Dma(buf) => buf.as_bytes(),
            IoBuffer::Heap(buf) => buf,
        }
    }
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            IoBuffer::Dma(buf) => buf.as_bytes_mut(),
            IoBuffer::Heap(buf) => buf,
        }
    }
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shrinks the buffer to `len` bytes (the part that is written).
    pub fn trim_to(&mut self, len: usize) {
        match self {
            IoBuffer::Dma(buf) => buf.trim_to_size(len),
            IoBuffer::Heap(buf) => buf.truncate(len),
        }
    }
}

/// One open file.
pub trait IoFile {
    /// Write alignment (position and length) this file requires; 1 for buffered files.
    fn alignment(&self) -> u64;
    /// The device's physical block size, where known (direct files on a block device).
    fn physical_block_size(&self) -> Option<u64> {
        None
    }
    /// A zeroed buffer of `size` bytes suitable for `write_at` on this file.
    fn alloc_buffer(&self, size: usize) -> IoBuffer;
    /// Writes the whole buffer at `pos`; returns bytes written (may be short).
    fn write_at(&self, buf: IoBuffer, pos: u64) -> IoFuture<'_, usize>;
    /// Reads up to `len` bytes at `pos` (any alignment); shorter at end of file.
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Bytes>;
    /// Makes every completed write durable.
    fn fdatasync(&self) -> IoFuture<'_, ()>;
    /// Sets the file length.
    fn truncate(&self, len: u64) -> IoFuture<'_, ()>;
    /// Current file length.
    fn file_size(&self) -> IoFuture<'_, u64>;
}

/// Directory and small-file operations, plus the file factory.
pub trait StorageIo {
    /// Opens (and with `create`, creates if absent) a file for reading and writing.
    fn open<'a>(
        &'a self,
        path: &'a Path,
        kind: FileKind,
        create: bool,
    ) -> IoFuture<'a, Rc<dyn IoFile>>;
    fn create_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    fn remove_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Removes a file; absent is not an error.
    fn remove_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Renames a file (within one directory); an absent source is not an error.
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()>;
    /// File names (not paths) in a directory.
    fn list_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Vec<String>>;
    /// Whole content of a small file; `None` if absent.
    fn read_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Option<Vec<u8>>>;
    /// Durably replaces a small file: write `<path>.tmp`, fdatasync, rename, fsync the directory.
    fn write_file_atomic<'a>(&'a self, path: &'a Path, data: Vec<u8>) -> IoFuture<'a, ()>;
    /// fsync of a directory (makes creates, renames and unlinks durable).
    fn sync_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Capacity and free space of the volume holding `path`.
    fn disk_space<'a>(&'a self, path: &'a Path) -> IoFuture<'a, DiskSpace>;
}

/// Real I/O on glommio's io_uring reactor. Must be used from inside a glommio executor.
#[derive(Default)]
pub struct GlommioIo;

/// A direct file. Reads use `DmaFile::read_at`; where the kernel refuses O_DIRECT reads through
/// io_uring (EOPNOTSUPP, seen on some VMs) the file falls back to a buffered read handle, which
/// is coherent with direct writes (the kernel invalidates cached pages on O_DIRECT writes).
struct GlommioDmaFile {
    file: DmaFile,
    path: PathBuf,
    physical_block_size: Option<u64>,
    buffered_reader: std::cell::RefCell<Option<Rc<BufferedFile>>>,
}

impl GlommioDmaFile {
    async fn buffered_read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let existing = self.buffered_reader.borrow().clone();
        let reader = match existing {
            Some(reader) => reader,
            None => {
                let reader = Rc::new(BufferedFile::open(&self.path).await?);
                *self.buffered_reader.borrow_mut() = Some(reader.clone());
                reader
            }
        };
        let read = reader.read_at(pos, len).await?;
        Ok(Bytes::copy_from_slice(&read))
    }
}
struct GlommioBufferedFile(BufferedFile);

impl IoFile for GlommioDmaFile {
    fn alignment(&self) -> u64 {
        self.file.alignment()
    }
    fn physical_block_size(&self) -> Option<u64> {
        self.physical_block_size
    }
    fn alloc_buffer(&self, size: usize) -> IoBuffer {
        // Not zeroed: the appender fills every byte it writes (data, then zero padding of the
        // last block in `take_write`); zeroing whole buffers cost half the append CPU.
        IoBuffer::Dma(self.file.alloc_dma_buffer(size))
    }
    fn write_at(&self, buf: IoBuffer, pos: u64) -> IoFuture<'_, usize> {
        Box::pin(async move {
            match buf {
                IoBuffer::Dma(buf) => Ok(self.file.write_at(buf, pos).await?),
                IoBuffer::Heap(vec) => {
                    let mut dma = self.file.alloc_dma_buffer(vec.len());
                    dma.as_bytes_mut().copy_from_slice(&vec);
                    Ok(self.file.write_at(dma, pos).await?)
                }
            }
        })
    }
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Bytes> {
        Box::pin(async move {
            // glommio 0.9 panics ("Buffer allocation failed") on a zero-length read when its
            // I/O memory pool is in use; there is nothing to read anyway.
            if len == 0 {
                return Ok(Bytes::new());
            }
            if self.buffered_reader.borrow().is_none() {
                match self.file.read_at(pos, len).await {
                    Ok(read) => return Ok(Bytes::copy_from_slice(&read)),
                    Err(err) => {
                        let err = io::Error::from(err);
                        if err.kind() != io::ErrorKind::Unsupported {
                            return Err(err);
                        }
                        tracing::debug!(path = %self.path.display(), "O_DIRECT reads unsupported; using buffered reads");
                    }
                }
            }
            self.buffered_read(pos, len).await
        })
    }
    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.fdatasync().await?) })
    }
    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.truncate(len).await?) })
    }
    fn file_size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { Ok(self.file.file_size().await?) })
    }
}

impl IoFile for GlommioBufferedFile {
    fn alignment(&self) -> u64 {
        1
    }
    fn alloc_buffer(&self, size: usize) -> IoBuffer {
        IoBuffer::Heap(vec![0; size])
    }
    fn write_at(&self, buf: IoBuffer, pos: u64) -> IoFuture<'_, usize> {
        Box::pin(async move {
            let vec = match buf {
                IoBuffer::Heap(vec) => vec,
                IoBuffer::Dma(dma) => dma.as_bytes().to_vec(),
            };
            Ok(self.0.write_at(vec, pos).await?)
        })
    }
    fn read_at(&self, pos: u64, len: usize) -> IoFuture<'_, Bytes> {
        Box::pin(async move {
            let read = self.0.read_at(pos, len).await?;
            Ok(Bytes::copy_from_slice(&read))
        })
    }
    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.0.fdatasync().await?) })
    }
    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.0.truncate(len).await?) })
    }
    fn file_size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { Ok(self.0.file_size().await?) })
    }
}

impl StorageIo for GlommioIo {
    fn open<'a>(
        &'a self,
        path: &'a Path,
        kind: FileKind,
        create: bool,
    ) -> IoFuture<'a, Rc<dyn IoFile>> {
        Box::pin(async move {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(create);
            let file: Rc<dyn IoFile> = match kind {
                FileKind::Direct => Rc::new(GlommioDmaFile {
                    file: options.dma_open(path).await?,
                    path: path.to_owned(),
                    physical_block_size: physical_block_size_of(path),
                    buffered_reader: std::cell::RefCell::new(None),
                }),
                FileKind::Buffered => {
                    Rc::new(GlommioBufferedFile(options.buffered_open(path).await?))
                }
            };
            Ok(file)
        })
    }
    fn create_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        // Directory creation is rare (partition creation) and metadata-only.
        Box::pin(async move { std::fs::create_dir_all(path) })
    }
    fn remove_dir_all<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move { absent_is_done(std::fs::remove_dir_all(path)) })
    }
    fn remove_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(
            async move { absent_is_done(glommio::io::remove(path).await.map_err(io::Error::from)) },
        )
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            absent_is_done(glommio::io::rename(from, to).await.map_err(io::Error::from))
        })
    }
    fn list_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path)? {
                if let Some(name) = entry?.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
    }
    fn read_file<'a>(&'a self, path: &'a Path) -> IoFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let file = match BufferedFile::open(path).await {
                Ok(file) => file,
                Err(err) => {
                    let err = io::Error::from(err);
                    return match err.kind() {
                        io::ErrorKind::NotFound => Ok(None),
                        _ => Err(err),
                    };
                }
            };
            let size = file.file_size().await?;
            let read = file.read_at(0, size as usize).await?;
            let data = read.to_vec();
            file.close().await?;
            Ok(Some(data))
        })
    }
    fn write_file_atomic<'a>(&'a self, path: &'a Path, data: Vec<u8>) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let tmp = file_names::tmp_path(path);
            let file = BufferedFile::create(&tmp).await?;
            let len = data.len();
            let written = file.write_at(data, 0).await?;
            if written != len {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
            }
            file.fdatasync().await?;
            file.close().await?;
            glommio::io::rename(&tmp, path).await?;
            self.sync_dir(parent_of(path)).await
        })
    }
    fn sync_dir<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let dir = glommio::io::Directory::open(path).await?;
            dir.sync().await?;
            dir.close().await?;
            Ok(())
        })
    }
    fn disk_space<'a>(&'a self, path: &'a Path) -> IoFuture<'a, DiskSpace> {
        Box::pin(async move {
            let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
            let fragment = stat.fragment_size() as u64;
            Ok(DiskSpace {
                capacity_bytes: stat.blocks() as u64 * fragment,
                free_bytes: stat.blocks_available() as u64 * fragment,
            })
        })
    }
}

/// The physical block size of the block device holding `path`, from sysfs (the device, or
/// the whole disk for a partition); `None` when unknown (not a block device, no sysfs).
/// sysfs is in memory: these small reads never wait for a disk.
fn physical_block_size_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let device = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    [device.join("queue"), device.join("../queue")]
        .iter()
        .find_map(|queue| std::fs::read_to_string(queue.join("physical_block_size")).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
}

/// Removing or renaming something already gone is not an error.
fn absent_is_done(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Parent directory of a file path (the path itself when it has none).
pub fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

/// Convenience for building paths in tests and callers.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
