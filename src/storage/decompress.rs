//! Streaming decompression of a compressed batch's records for the record walk, with bounded
//! memory: the walk pulls bytes through one scratch buffer per thread, the decompressed total is
//! bounded by [`limits::DECOMPRESSED_BATCH_BYTES_MAX`], and the payload must be one complete,
//! checked stream with nothing after it.
//!
//! Codecs, as Kafka writes and reads them:
//! - gzip (1): RFC 1952 members (Java's `GZIPInputStream` reads concatenated members too);
//! - snappy (2): xerial's framing (`\x82SNAPPY\0`, version, compatible version, then blocks of
//!   a big-endian i32 length and a raw snappy block), or one raw snappy block when the magic is
//!   absent (librdkafka), as xerial's `SnappyInputStream` falls back;
//! - lz4 (3): the LZ4 frame format (Kafka's `Lz4BlockInputStream`, magic v1+ checksums);
//! - zstd (4): zstd frames.
//!
//! Only the walk decompresses (Produce validation, and ListOffsets by timestamp, which needs
//! each record's timestamp), and the log cleaner (`decompress_all`, `storage::cleaner`), which
//! rebuilds the batches it compacts; otherwise the compressed bytes are stored and served as
//! they came.

use std::cell::RefCell;
use std::io::{self, Read};

use super::record_walk::{RecordSource, SourceError};
use crate::limits::{DECOMPRESSED_BATCH_BYTES_MAX, DECOMPRESSION_SCRATCH_BYTES};

/// Compression codec ids of the batch attributes.
pub const CODEC_GZIP: u8 = 1;
pub const CODEC_SNAPPY: u8 = 2;
pub const CODEC_LZ4: u8 = 3;
pub const CODEC_ZSTD: u8 = 4;

/// xerial's stream header: magic, version 1, compatible version 1.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
/// Snappy cannot expand its input by more than about 21 times (a 3-byte copy of 64 bytes); a
/// block that declares more is garbage, refused before anything is allocated for it.
const SNAPPY_EXPANSION_MAX: usize = 32;

thread_local! {
    /// The walk's buffer of decompressed bytes, reused by every batch validated on this thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `walk` over the decompressed records of `payload` (the bytes after the batch header).
/// Returns `Err` before `walk` runs when the codec cannot even start (a bad zstd or lz4 header).
pub fn with_records<T>(
    codec: u8,
    payload: &[u8],
    walk: impl FnOnce(&mut StreamSource<'_, '_>) -> T,
) -> Result<T, SourceError> {
    let decoder = Decoder::new(codec, payload)?;
    SCRATCH.with(|scratch| {
        // A nested call (none exists) would find the buffer borrowed and use its own.
        let mut own = Vec::new();
        let mut borrowed = scratch.try_borrow_mut();
        let buf = match borrowed.as_mut() {
            Ok(buf) => &mut **buf,
            Err(_) => &mut own,
        };
        buf.resize(DECOMPRESSION_SCRATCH_BYTES, 0);
        let mut source = StreamSource {
            decoder,
            buf,
            at: 0,
            len: 0,
            consumed: 0,
            produced: 0,
        };
        Ok(walk(&mut source))
    })
}

/// The whole decompressed records of `payload`, for the log cleaner (`storage::cleaner`), which
/// rebuilds batches: bounded by [`DECOMPRESSED_BATCH_BYTES_MAX`], the stream checked complete.
pub fn decompress_all(codec: u8, payload: &[u8]) -> Result<Vec<u8>, SourceError> {
    let mut decoder = Decoder::new(codec, payload)?;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; DECOMPRESSION_SCRATCH_BYTES];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::Codec(e.to_string())),
        };
        if n == 0 {
            break;
        }
        if out.len() + n > DECOMPRESSED_BATCH_BYTES_MAX {
            return Err(SourceError::OverBudget(DECOMPRESSED_BATCH_BYTES_MAX as u64));
        }
        out.extend_from_slice(&chunk[..n]);
    }
    decoder.complete().map_err(SourceError::Codec)?;
    Ok(out)
}

/// A [`RecordSource`] over a decompressing stream.
pub struct StreamSource<'p, 'b> {
    decoder: Decoder<'p>,
    buf: &'b mut [u8],
    at: usize,
    len: usize,
    /// Bytes handed to the walk.
    consumed: u64,
    /// Bytes the decoder produced.
    produced: u64,
}

impl StreamSource<'_, '_> {
    /// Refills the buffer; `Ok(false)` at the end of the stream.
    fn refill(&mut self) -> Result<bool, SourceError> {
        let n = loop {
            match self.decoder.read(self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SourceError::Codec(e.to_string())),
            }
        };
        self.produced += n as u64;
        if self.produced > DECOMPRESSED_BATCH_BYTES_MAX as u64 {
            return Err(SourceError::OverBudget(DECOMPRESSED_BATCH_BYTES_MAX as u64));
        }
        self.at = 0;
        self.len = n;
        Ok(n > 0)
    }
}

impl RecordSource for StreamSource<'_, '_> {
    #[inline]
    fn next_byte(&mut self) -> Result<u8, SourceError> {
        if self.at == self.len && !self.refill()? {
            return Err(SourceError::End);
        }
        let byte = self.buf[self.at];
        self.at += 1;
        self.consumed += 1;
        Ok(byte)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), SourceError> {
        while n > 0 {
            if self.at == self.len && !self.refill()? {
                return Err(SourceError::End);
            }
            let step = n.min((self.len - self.at) as u64);
            self.at += step as usize;
            self.consumed += step;
            n -= step;
        }
        Ok(())
    }

    #[inline]
    fn position(&self) -> u64 {
        self.consumed
    }

    #[inline]
    fn remaining_max(&self) -> u64 {
        (DECOMPRESSED_BATCH_BYTES_MAX as u64).saturating_sub(self.consumed)
    }

    fn at_end(&mut self) -> Result<bool, SourceError> {
        if self.at < self.len || self.refill()? {
            return Ok(false);
        }
        self.decoder.complete().map_err(SourceError::Codec)?;
        Ok(true)
    }
}

/// The four codecs behind one `Read`.
enum Decoder<'a> {
    Gzip(flate2::bufread::MultiGzDecoder<&'a [u8]>),
    Snappy(SnappyReader<'a>),
    /// `None` once `complete` has finished the frame.
    Lz4(Option<lz4::Decoder<&'a [u8]>>),
    Zstd(zstd::stream::read::Decoder<'static, &'a [u8]>),
}

impl<'a> Decoder<'a> {
    fn new(codec: u8, payload: &'a [u8]) -> Result<Self, SourceError> {
        let codec_error = |e: io::Error| SourceError::Codec(e.to_string());
        Ok(match codec {
            CODEC_GZIP => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(payload)),
            CODEC_SNAPPY => Decoder::Snappy(SnappyReader::new(payload)?),
            CODEC_LZ4 => Decoder::Lz4(Some(lz4::Decoder::new(payload).map_err(codec_error)?)),
            CODEC_ZSTD => Decoder::Zstd(
                zstd::stream::read::Decoder::with_buffer(payload).map_err(codec_error)?,
            ),
            other => return Err(SourceError::Codec(format!("unknown codec {other}"))),
        })
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Snappy(d) => d.read(buf),
            Decoder::Lz4(Some(d)) => d.read(buf),
            Decoder::Lz4(None) => Ok(0),
            Decoder::Zstd(d) => d.read(buf),
        }
    }

    /// After `read` returned 0: whether the stream was complete and no input is left over.
    /// gzip and zstd report a truncated stream or trailing garbage from `read` itself; lz4's
    /// `read` returns 0 at the end of its input even inside a frame, so it is asked here.
    fn complete(&mut self) -> Result<(), String> {
        match self {
            Decoder::Gzip(_) | Decoder::Zstd(_) => Ok(()),
            Decoder::Snappy(d) => d.complete(),
            Decoder::Lz4(slot) => {
                let Some(d) = slot.take() else {
                    return Ok(());
                };
                let (rest, done) = d.finish();
                done.map_err(|_| "lz4 frame is truncated".to_string())?;
                if !rest.is_empty() {
                    return Err("bytes remain after the lz4 frame".into());
                }
                Ok(())
            }
        }
    }
}

/// Snappy as Kafka's clients write it: xerial blocks, or one raw block. Each block is
/// decompressed whole into `block` (bounded by the budget and by snappy's expansion limit).
struct SnappyReader<'a> {
    /// Compressed input not yet decompressed.
    input: &'a [u8],
    /// Whether `input` is a sequence of xerial blocks (else one raw block).
    framed: bool,
    block: Vec<u8>,
    at: usize,
    /// Decompressed bytes so far, for the budget.
    total: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8]) -> Result<Self, SourceError> {
        if payload.is_empty() {
            return Err(SourceError::Codec("empty snappy payload".into()));
        }
        let framed = payload.starts_with(XERIAL_MAGIC);
        let input = if framed {
            payload
                .get(XERIAL_HEADER_BYTES..)
                .ok_or_else(|| SourceError::Codec("truncated xerial snappy header".into()))?
        } else {
            payload
        };
        Ok(SnappyReader {
            input,
            framed,
            block: Vec::new(),
            at: 0,
            total: 0,
        })
    }

    /// Decompresses the next block into `block`; `Ok(false)` when the input is spent.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            let (length, rest) = self
                .input
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("truncated xerial block length"))?;
            let length = u32::from_be_bytes(*length) as usize;
            let block = rest
                .get(..length)
                .ok_or_else(|| corrupt("truncated xerial block"))?;
            self.input = &rest[length..];
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let length = snap::raw::decompress_len(compressed).map_err(|e| corrupt(&e.to_string()))?;
        if length > compressed.len().saturating_mul(SNAPPY_EXPANSION_MAX) {
            return Err(corrupt(
                "snappy block declares more than snappy can expand to",
            ));
        }
        if self.total.saturating_add(length) > DECOMPRESSED_BATCH_BYTES_MAX {
            return Err(corrupt("snappy blocks decompress to more than the limit"));
        }
        self.total += length;
        self.block.clear();
        self.block.resize(length, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(|e| corrupt(&e.to_string()))?;
        self.at = 0;
        Ok(true)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    fn complete(&self) -> Result<(), String> {
        Ok(())
    }
}

fn corrupt(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_string())
}
