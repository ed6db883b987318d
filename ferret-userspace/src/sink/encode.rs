//! Parquet column chunks encoded straight from plain values.
//!
//! Going through Arrow arrays and parquet's generic column writers cost the
//! event-log writer a few hundred nanoseconds a row, most of it hashing
//! every string into a dictionary as it was written. ferret knows its
//! strings up front (a function's name and module by probe-table index, a
//! thread's name by its interned address, kinds and statuses are constants), so
//! a row here is a handful of pushes of integers and dictionary keys into
//! plain vectors, and each column of a batch is encoded in one tight loop:
//! integers DELTA_BINARY_PACKED, dictionary keys and definition levels in
//! the RLE / bit-packed hybrid, doubles PLAIN, every page compressed with
//! zstd. The parquet crate still writes the page headers, the row groups and
//! the footer: the file is ordinary Parquet (version 1 data pages, one
//! dictionary page per string column chunk), the same encodings parquet's
//! own writer picks for these columns.
//!
//! What it costs, measured with `cargo run --release --example bench --
//! pipeline` (the `pipeline` part of `cargo xtask bench`) on this project's
//! 2-vCPU VM: decoding and rebuilding the stacks take about 25 ns per event,
//! the whole `record` path about 78 ns, so writing a row costs about 53 ns
//! (one row per event, about 1.07 bytes of file per row). arrow-rs's own
//! writer still hashes every dictionary string per row; through it the
//! writer cost a few hundred nanoseconds a row.
//!
//! A column buffers the rows of one batch (a data page) and the encoded
//! pages of the open row group (a column chunk); [`Column::encode_page`]
//! turns the first into the second, [`Column::finish_chunk`] hands the chunk
//! over.

use std::collections::HashMap;
use std::io::Write as _;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter as _};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// zstd level of every page: 1, parquet's default, is the fast end.
pub const ZSTD_LEVEL: i32 = 1;

/// Longest string kept as a column chunk's minimum or maximum (parquet's
/// default truncation length); a chunk with a longer extreme gets no
/// min/max rather than a truncated one.
const MAX_STATISTICS_LEN: usize = 64;

/// The page compressor, shared by every column, with a scratch buffer for
/// the uncompressed page body.
pub struct Pages {
    zstd: zstd::bulk::Compressor<'static>,
    body: Vec<u8>,
}

impl Pages {
    pub fn new() -> Result<Self> {
        Ok(Self {
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .map_err(|e| ParquetError::External(Box::new(e)))?,
            body: Vec::new(),
        })
    }

    /// The codec recorded in the column chunks' metadata.
    pub fn compression() -> Compression {
        Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"))
    }

    fn compress(&mut self) -> Result<Bytes> {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(self.body.len()));
        self.zstd
            .compress_to_buffer(&self.body, &mut out)
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Bytes::from(out))
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

/// One column of the event log: the rows of the current batch and the
/// encoded pages of the open row group.
pub trait Column {
    /// Encodes the batch's `rows` rows (cells not written are null) as one
    /// data page of the open column chunk; the batch is left empty.
    fn encode_page(&mut self, rows: usize, pages: &mut Pages) -> Result<()>;
    /// The open column chunk's bytes (offsets from 0) and metadata; a new
    /// chunk starts empty.
    fn finish_chunk(
        &mut self,
        descr: ColumnDescPtr,
        pages: &mut Pages,
    ) -> Result<(Bytes, ColumnCloseResult)>;
}

// --- cells --------------------------------------------------------------------

/// Which cells of a nullable column hold a value: one bit per row, least
/// significant first (the order Parquet packs definition levels in). Bits
/// are only kept once a null has been seen: a column that every row fills
/// (the span columns, in a batch without metric rows) just counts.
#[derive(Debug)]
struct Validity {
    /// `ceil(len / 8)` bytes, unless `dense`.
    bits: Vec<u8>,
    /// Every cell so far holds a value, and `bits` is empty.
    dense: bool,
    len: usize,
    valid: usize,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            bits: Vec::new(),
            dense: true,
            len: 0,
            valid: 0,
        }
    }
}

impl Validity {
    /// Nulls up to row `row`, then a value there.
    #[inline]
    fn push_at(&mut self, row: usize) {
        if self.dense && self.len == row {
            self.len += 1;
            self.valid += 1;
            return;
        }
        self.pad(row);
        let i = self.len;
        if i.is_multiple_of(8) {
            self.bits.push(0);
        }
        self.bits[i / 8] |= 1 << (i % 8);
        self.len = i + 1;
        self.valid += 1;
    }

    /// Nulls up to `len` cells.
    fn pad(&mut self, len: usize) {
        if self.len < len {
            if self.dense {
                self.dense = false;
                self.bits.clear();
                self.bits.resize(self.len / 8, 0xFF);
                if !self.len.is_multiple_of(8) {
                    self.bits.push((1u8 << (self.len % 8)) - 1);
                }
            }
            self.len = len;
            self.bits.resize(len.div_ceil(8), 0);
        }
    }

    fn clear(&mut self) {
        self.bits.clear();
        self.dense = true;
        self.len = 0;
        self.valid = 0;
    }

    /// The definition levels of the page body: a 4-byte length, then the
    /// levels in the RLE / bit-packed hybrid at bit width 1.
    fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        if self.valid == self.len || self.valid == 0 {
            rle_run(out, self.len, u64::from(self.valid != 0), 1);
        } else {
            levels_hybrid(&self.bits, self.len, out);
        }
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

// --- the open column chunk ------------------------------------------------------

/// The pages of one column in the open row group, and their tallies.
struct Chunk {
    out: TrackedWrite<Vec<u8>>,
    first_data_page: Option<u64>,
    compressed: u64,
    uncompressed: u64,
    rows: u64,
    nulls: u64,
    /// Data pages by encoding, in the order they first appeared.
    data_pages: Vec<(Encoding, i32)>,
}

impl Chunk {
    fn new() -> Self {
        Self {
            out: TrackedWrite::new(Vec::new()),
            first_data_page: None,
            compressed: 0,
            uncompressed: 0,
            rows: 0,
            nulls: 0,
            data_pages: Vec::new(),
        }
    }

    /// Writes `pages.body` (levels and values of `rows` rows, `nulls` of
    /// them null) as a compressed data page.
    fn data_page(
        &mut self,
        pages: &mut Pages,
        rows: usize,
        nulls: usize,
        encoding: Encoding,
    ) -> Result<()> {
        let uncompressed = pages.body.len();
        let page = Page::DataPage {
            buf: pages.compress()?,
            num_values: u32::try_from(rows)
                .map_err(|_| ParquetError::General("page too long".into()))?,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.out)
            .write_page(CompressedPage::new(page, uncompressed))?;
        self.first_data_page.get_or_insert(spec.offset);
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        self.rows += rows as u64;
        self.nulls += nulls as u64;
        match self.data_pages.iter_mut().find(|(e, _)| *e == encoding) {
            Some((_, count)) => *count += 1,
            None => self.data_pages.push((encoding, 1)),
        }
        Ok(())
    }

    /// The chunk, with `dictionary` (PLAIN values, count) as its first page,
    /// and a fresh chunk in its place.
    fn finish(
        &mut self,
        descr: ColumnDescPtr,
        dictionary: Option<(&[u8], usize)>,
        pages: &mut Pages,
        statistics: Statistics,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let chunk = std::mem::replace(self, Self::new());
        let data = chunk.out.into_inner()?;
        let mut out = TrackedWrite::new(Vec::with_capacity(data.len() + 256));
        let mut compressed = chunk.compressed;
        let mut uncompressed = chunk.uncompressed;
        let mut encodings = vec![Encoding::RLE];
        let mut encoding_stats = Vec::new();
        let mut dictionary_offset = None;
        if let Some((values, count)) = dictionary {
            pages.body.clear();
            pages.body.extend_from_slice(values);
            let page = Page::DictionaryPage {
                buf: pages.compress()?,
                num_values: count as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            };
            let spec = SerializedPageWriter::new(&mut out)
                .write_page(CompressedPage::new(page, values.len()))?;
            dictionary_offset = Some(spec.offset as i64);
            compressed += spec.compressed_size as u64;
            uncompressed += spec.uncompressed_size as u64;
            encodings.push(Encoding::PLAIN);
            encoding_stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }
        let shift = out.bytes_written() as u64;
        out.write_all(&data)?;
        for &(encoding, count) in &chunk.data_pages {
            encodings.push(encoding);
            encoding_stats.push(PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding,
                count,
            });
        }
        let bytes = Bytes::from(out.into_inner()?);
        let metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(Pages::compression())
            .set_encodings(encodings)
            .set_page_encoding_stats(encoding_stats)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_num_values(chunk.rows as i64)
            .set_data_page_offset((shift + chunk.first_data_page.unwrap_or(0)) as i64)
            .set_dictionary_page_offset(dictionary_offset)
            .set_statistics(statistics)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: chunk.rows,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((bytes, close))
    }
}

// --- integers -------------------------------------------------------------------

/// INT32 and INT64 as DELTA_BINARY_PACKED wants them.
pub trait DeltaInt: Copy + Ord + Default {
    /// Values per miniblock (parquet's writer: 32 for INT32, 64 for INT64).
    const MINIBLOCK: usize;
    /// `self - prev`, wrapping in the column's width.
    fn delta(self, prev: Self) -> Self;
    /// `self - min` as an unsigned value of the column's width.
    fn above(self, min: Self) -> u64;
    fn widen(self) -> i64;
    /// Column chunk statistics.
    fn statistics(range: Option<(Self, Self)>, nulls: u64) -> Statistics;
}

impl DeltaInt for i32 {
    const MINIBLOCK: usize = 32;
    #[inline]
    fn delta(self, prev: Self) -> Self {
        self.wrapping_sub(prev)
    }
    #[inline]
    fn above(self, min: Self) -> u64 {
        u64::from(self.wrapping_sub(min) as u32)
    }
    fn widen(self) -> i64 {
        i64::from(self)
    }
    fn statistics(range: Option<(Self, Self)>, nulls: u64) -> Statistics {
        Statistics::Int32(
            ValueStatistics::new(
                range.map(|r| r.0),
                range.map(|r| r.1),
                None,
                Some(nulls),
                false,
            )
            .with_backwards_compatible_min_max(true),
        )
    }
}

impl DeltaInt for i64 {
    const MINIBLOCK: usize = 64;
    #[inline]
    fn delta(self, prev: Self) -> Self {
        self.wrapping_sub(prev)
    }
    #[inline]
    fn above(self, min: Self) -> u64 {
        self.wrapping_sub(min) as u64
    }
    fn widen(self) -> i64 {
        self
    }
    fn statistics(range: Option<(Self, Self)>, nulls: u64) -> Statistics {
        Statistics::Int64(
            ValueStatistics::new(
                range.map(|r| r.0),
                range.map(|r| r.1),
                None,
                Some(nulls),
                false,
            )
            .with_backwards_compatible_min_max(true),
        )
    }
}

/// An INT32 or INT64 column, DELTA_BINARY_PACKED.
pub struct IntColumn<T> {
    values: Vec<T>,
    /// Scratch: the deltas of a page.
    deltas: Vec<T>,
    /// `None` for a required column.
    validity: Option<Validity>,
    /// Smallest and largest value of the open chunk.
    range: Option<(T, T)>,
    chunk: Chunk,
}

impl<T: DeltaInt> IntColumn<T> {
    pub fn new(nullable: bool, capacity: usize) -> Self {
        Self {
            values: Vec::with_capacity(capacity),
            deltas: Vec::new(),
            validity: nullable.then(Validity::default),
            range: None,
            chunk: Chunk::new(),
        }
    }

    /// `value` in row `row` of the batch; the rows skipped since the last
    /// value are null.
    #[inline]
    pub fn push(&mut self, row: usize, value: T) {
        match &mut self.validity {
            Some(validity) => validity.push_at(row),
            None => debug_assert_eq!(self.values.len(), row, "a required column skipped a row"),
        }
        self.values.push(value);
    }
}

impl<T: DeltaInt> Column for IntColumn<T> {
    fn encode_page(&mut self, rows: usize, pages: &mut Pages) -> Result<()> {
        pages.body.clear();
        let nulls = match &mut self.validity {
            Some(validity) => {
                validity.pad(rows);
                validity.encode(&mut pages.body);
                rows - validity.valid
            }
            None => 0,
        };
        if let Some((lo, hi)) = delta_binary_packed(&self.values, &mut self.deltas, &mut pages.body)
        {
            self.range = Some(match self.range {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
        self.chunk
            .data_page(pages, rows, nulls, Encoding::DELTA_BINARY_PACKED)?;
        self.values.clear();
        if let Some(validity) = &mut self.validity {
            validity.clear();
        }
        Ok(())
    }

    fn finish_chunk(
        &mut self,
        descr: ColumnDescPtr,
        pages: &mut Pages,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let statistics = T::statistics(self.range.take(), self.chunk.nulls);
        self.chunk.finish(descr, None, pages, statistics)
    }
}

// --- doubles --------------------------------------------------------------------

/// A DOUBLE column, PLAIN (metric rows only: few).
pub struct DoubleColumn {
    values: Vec<f64>,
    validity: Validity,
    /// Smallest and largest value of the open chunk, NaN aside.
    range: Option<(f64, f64)>,
    chunk: Chunk,
}

impl DoubleColumn {
    pub fn new() -> Self {
        Self {
            values: Vec::new(),
            validity: Validity::default(),
            range: None,
            chunk: Chunk::new(),
        }
    }

    /// `value` in row `row`; the rows skipped are null.
    pub fn push(&mut self, row: usize, value: f64) {
        self.validity.push_at(row);
        self.values.push(value);
        if !value.is_nan() {
            self.range = Some(match self.range {
                Some((lo, hi)) => (lo.min(value), hi.max(value)),
                None => (value, value),
            });
        }
    }
}

impl Column for DoubleColumn {
    fn encode_page(&mut self, rows: usize, pages: &mut Pages) -> Result<()> {
        pages.body.clear();
        self.validity.pad(rows);
        self.validity.encode(&mut pages.body);
        for v in &self.values {
            pages.body.extend_from_slice(&v.to_le_bytes());
        }
        let nulls = rows - self.validity.valid;
        self.chunk.data_page(pages, rows, nulls, Encoding::PLAIN)?;
        self.values.clear();
        self.validity.clear();
        Ok(())
    }

    fn finish_chunk(
        &mut self,
        descr: ColumnDescPtr,
        pages: &mut Pages,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        // Parquet's rule for zeros: the minimum is -0.0, the maximum +0.0.
        let range = self.range.take().map(|(lo, hi)| {
            (
                if lo == 0.0 { -0.0 } else { lo },
                if hi == 0.0 { 0.0 } else { hi },
            )
        });
        let statistics = Statistics::Double(ValueStatistics::new(
            range.map(|r| r.0),
            range.map(|r| r.1),
            None,
            Some(self.chunk.nulls),
            false,
        ));
        self.chunk.finish(descr, None, pages, statistics)
    }
}

// --- strings --------------------------------------------------------------------

/// A STRING column, dictionary encoded: each row holds a key into the open
/// chunk's dictionary.
///
/// A key is found without hashing the string when the caller can name it:
/// by a small `slot` number it owns (a probe-table index, a kind), or by
/// the address of an interned string (a thread's name). Anything else is
/// looked up by content.
pub struct StrColumn {
    keys: Vec<u32>,
    validity: Option<Validity>,
    /// The open chunk's dictionary, PLAIN encoded (length, bytes), and its
    /// entries by content.
    dictionary: Vec<u8>,
    entries: HashMap<Box<str>, u32>,
    /// Slot → key in the open chunk (`NO_KEY`: not yet used).
    slots: Vec<u32>,
    /// The last interned string looked up, and its key.
    last: Option<(&'static str, u32)>,
    chunk: Chunk,
}

const NO_KEY: u32 = u32::MAX;

impl StrColumn {
    pub fn new(nullable: bool, capacity: usize) -> Self {
        Self {
            keys: Vec::with_capacity(capacity),
            validity: nullable.then(Validity::default),
            dictionary: Vec::new(),
            entries: HashMap::new(),
            slots: Vec::new(),
            last: None,
            chunk: Chunk::new(),
        }
    }

    /// `value` in row `row`, known to the caller as `slot`: the same slot
    /// must always mean the same string (until [`Column::finish_chunk`]).
    #[inline]
    pub fn push_slot(&mut self, row: usize, slot: usize, value: &str) {
        let key = match self.slots.get(slot) {
            Some(&key) if key != NO_KEY => key,
            _ => self.fill_slot(slot, value),
        };
        self.push_key(row, key);
    }

    /// `value`'s key, remembered for `slot`.
    #[cold]
    fn fill_slot(&mut self, slot: usize, value: &str) -> u32 {
        let key = self.intern(value);
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, NO_KEY);
        }
        self.slots[slot] = key;
        key
    }

    /// `value` in row `row`, an interned string (an address that only ever
    /// holds this text); a run of rows sharing one looks it up once.
    #[inline]
    pub fn push_interned(&mut self, row: usize, value: &'static str) {
        let key = match self.last {
            Some((last, key)) if std::ptr::eq(last, value) => key,
            _ => self.remember(value),
        };
        self.push_key(row, key);
    }

    /// `value`'s key, remembered as the last interned string.
    #[cold]
    fn remember(&mut self, value: &'static str) -> u32 {
        let key = self.intern(value);
        self.last = Some((value, key));
        key
    }

    /// `value` in row `row`.
    pub fn push(&mut self, row: usize, value: &str) {
        let key = self.intern(value);
        self.push_key(row, key);
    }

    #[inline]
    fn push_key(&mut self, row: usize, key: u32) {
        match &mut self.validity {
            Some(validity) => validity.push_at(row),
            None => debug_assert_eq!(self.keys.len(), row, "a required column skipped a row"),
        }
        self.keys.push(key);
    }

    fn intern(&mut self, value: &str) -> u32 {
        if let Some(&key) = self.entries.get(value) {
            return key;
        }
        let key = self.entries.len() as u32;
        self.dictionary
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.dictionary.extend_from_slice(value.as_bytes());
        self.entries.insert(value.into(), key);
        key
    }

    /// Minimum and maximum of the dictionary (every entry is used), unless
    /// one is too long to keep whole.
    fn statistics(&self) -> Statistics {
        let mut range: Option<(&str, &str)> = None;
        for s in self.entries.keys() {
            let s: &str = s;
            range = Some(match range {
                Some((lo, hi)) => (lo.min(s), hi.max(s)),
                None => (s, s),
            });
        }
        let range = range.filter(|(lo, hi)| lo.len().max(hi.len()) <= MAX_STATISTICS_LEN);
        let bytes = |s: &str| ByteArray::from(s.as_bytes().to_vec());
        Statistics::ByteArray(ValueStatistics::new(
            range.map(|r| bytes(r.0)),
            range.map(|r| bytes(r.1)),
            None,
            Some(self.chunk.nulls),
            false,
        ))
    }
}

impl Column for StrColumn {
    fn encode_page(&mut self, rows: usize, pages: &mut Pages) -> Result<()> {
        pages.body.clear();
        let nulls = match &mut self.validity {
            Some(validity) => {
                validity.pad(rows);
                validity.encode(&mut pages.body);
                rows - validity.valid
            }
            None => 0,
        };
        let encoding = if self.keys.is_empty() {
            // No values: nothing refers to a dictionary.
            Encoding::PLAIN
        } else {
            // Every key is below the dictionary's length.
            let width = bit_width(self.entries.len() as u64 - 1).max(1);
            pages.body.push(width as u8);
            keys_hybrid(&self.keys, width, &mut pages.body);
            Encoding::RLE_DICTIONARY
        };
        self.chunk.data_page(pages, rows, nulls, encoding)?;
        self.keys.clear();
        if let Some(validity) = &mut self.validity {
            validity.clear();
        }
        Ok(())
    }

    fn finish_chunk(
        &mut self,
        descr: ColumnDescPtr,
        pages: &mut Pages,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let statistics = self.statistics();
        let dictionary =
            (!self.entries.is_empty()).then_some((self.dictionary.as_slice(), self.entries.len()));
        let done = self.chunk.finish(descr, dictionary, pages, statistics)?;
        self.dictionary.clear();
        self.entries.clear();
        self.slots.fill(NO_KEY);
        self.last = None;
        Ok(done)
    }
}

// --- encodings ------------------------------------------------------------------

/// Bits needed for `v` (0 for 0).
fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_uleb(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// An RLE run of the hybrid encoding: `count` times `value`, `width` bits.
fn rle_run(out: &mut Vec<u8>, count: usize, value: u64, width: u32) {
    put_uleb(out, (count as u64) << 1);
    out.extend_from_slice(&value.to_le_bytes()[..width.div_ceil(8) as usize]);
}

/// Definition levels (bit width 1) from `bits` (one bit per level, `len`
/// levels) in the RLE / bit-packed hybrid: runs of whole bytes of zeros or
/// ones become RLE runs, the rest is copied as bit-packed groups of eight.
fn levels_hybrid(bits: &[u8], len: usize, out: &mut Vec<u8>) {
    let bytes = len.div_ceil(8);
    let literal = |out: &mut Vec<u8>, from: usize, to: usize| {
        if to > from {
            put_uleb(out, ((to - from) as u64) << 1 | 1);
            out.extend_from_slice(&bits[from..to]);
        }
    };
    let (mut i, mut pending) = (0, 0);
    while i < bytes {
        let b = bits[i];
        if b == 0 || b == 0xFF {
            let mut j = i + 1;
            while j < bytes && bits[j] == b {
                j += 1;
            }
            // A last byte that is partly past `len` is zero there, so a
            // run of 0xFF never includes it.
            if j - i >= 2 || j == bytes {
                literal(out, pending, i);
                rle_run(out, (j * 8).min(len) - i * 8, u64::from(b & 1), 1);
                i = j;
                pending = j;
                continue;
            }
        }
        i += 1;
    }
    literal(out, pending, bytes);
}

/// Dictionary keys (each below `2^width`) in the RLE / bit-packed hybrid: a
/// run of eight or more equal keys starting a group becomes an RLE run, the
/// rest bit-packed groups of eight (the last padded with zeros).
fn keys_hybrid(keys: &[u32], width: u32, out: &mut Vec<u8>) {
    let n = keys.len();
    let (mut i, mut pending) = (0, 0);
    while i < n {
        let v = keys[i];
        let mut j = i + 1;
        while j < n && keys[j] == v {
            j += 1;
        }
        if j - i >= 8 {
            pack_keys(&keys[pending..i], width, out);
            rle_run(out, j - i, u64::from(v), width);
            i = j;
            pending = j;
        } else {
            i += 8;
        }
    }
    pack_keys(&keys[pending..n.min(i)], width, out);
}

/// A bit-packed run of `keys`, padded with zeros to a multiple of eight.
fn pack_keys(keys: &[u32], width: u32, out: &mut Vec<u8>) {
    if keys.is_empty() {
        return;
    }
    let groups = keys.len().div_ceil(8);
    put_uleb(out, (groups as u64) << 1 | 1);
    let padded = keys
        .iter()
        .map(|&k| u64::from(k))
        .chain(std::iter::repeat_n(0, groups * 8 - keys.len()));
    pack_narrow(padded, width, out);
}

/// `values` as DELTA_BINARY_PACKED, blocks of four miniblocks of
/// [`DeltaInt::MINIBLOCK`] values (the layout parquet's writer uses);
/// `deltas` is scratch space. Returns the smallest and largest value.
fn delta_binary_packed<T: DeltaInt>(
    values: &[T],
    deltas: &mut Vec<T>,
    out: &mut Vec<u8>,
) -> Option<(T, T)> {
    let mini = T::MINIBLOCK;
    put_uleb(out, (4 * mini) as u64);
    put_uleb(out, 4);
    put_uleb(out, values.len() as u64);
    put_zigzag(out, values.first().map_or(0, |v| v.widen()));
    let &first = values.first()?;
    // One pass for the deltas and the range of the values.
    deltas.clear();
    let (mut lo, mut hi, mut prev) = (first, first, first);
    deltas.extend(values[1..].iter().map(|&v| {
        lo = lo.min(v);
        hi = hi.max(v);
        let delta = v.delta(prev);
        prev = v;
        delta
    }));
    for block in deltas.chunks(4 * mini) {
        // Each miniblock's range of deltas: the block's minimum is the
        // least of them, and a miniblock's width that of its largest
        // delta above it.
        let mut ranges = [(T::default(), T::default()); 4];
        for (range, miniblock) in ranges.iter_mut().zip(block.chunks(mini)) {
            let d0 = miniblock[0];
            *range = miniblock
                .iter()
                .fold((d0, d0), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        }
        let used = block.len().div_ceil(mini);
        let min = ranges[..used]
            .iter()
            .map(|r| r.0)
            .min()
            .expect("a block has a miniblock");
        put_zigzag(out, min.widen());
        let widths = out.len();
        // Widths of miniblocks past the last value stay 0.
        out.extend_from_slice(&[0; 4]);
        for (m, miniblock) in block.chunks(mini).enumerate() {
            let width = bit_width(ranges[m].1.above(min));
            out[widths + m] = width as u8;
            // The last miniblock is padded with zeros to its full length.
            let above = miniblock
                .iter()
                .map(|d| d.above(min))
                .chain(std::iter::repeat_n(0, mini - miniblock.len()));
            if width == 0 {
                // Nothing to store: every delta is the minimum.
            } else if width <= 32 {
                pack_narrow(above, width, out);
            } else {
                pack_wide(above, width, out);
            }
        }
    }
    Some((lo, hi))
}

/// Bit-packs `values` of at most 32 bits, least significant bit first; a
/// multiple of eight values, so they fill whole bytes.
fn pack_narrow(values: impl Iterator<Item = u64>, width: u32, out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u64, 0u32);
    for v in values {
        acc |= v << bits;
        bits += width;
        if bits >= 32 {
            out.extend_from_slice(&(acc as u32).to_le_bytes());
            acc >>= 32;
            bits -= 32;
        }
    }
    while bits > 0 {
        out.push(acc as u8);
        acc >>= 8;
        bits -= 8;
    }
}

/// [`pack_narrow`] for values of up to 64 bits.
fn pack_wide(values: impl Iterator<Item = u64>, width: u32, out: &mut Vec<u8>) {
    let (mut acc, mut bits) = (0u128, 0u32);
    for v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    while bits > 0 {
        out.push(acc as u8);
        acc >>= 8;
        bits -= 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_mix_runs_and_packed_groups() {
        // 20 valid, then 5 alternating, then 30 null.
        let mut v = Validity::default();
        for row in 0..20 {
            v.push_at(row);
        }
        for row in (20..25).step_by(2) {
            v.push_at(row);
        }
        v.pad(55);
        let mut out = Vec::new();
        levels_hybrid(&v.bits, v.len, &mut out);
        // Bytes: FF FF | (16..24: 1111 0101 → 0b0101_1111? bits 16..19 valid,
        // 20, 22, 24 valid) ...
        assert_eq!(v.bits.len(), 7);
        assert_eq!(&out[..2], &[16 << 1, 1], "an RLE run of 16 ones");
        // Then a literal run: bytes 2 and 3 (bits 16..31), then zeros.
        assert_eq!(out[2], (2 << 1) | 1);
        assert_eq!(&out[3..5], &v.bits[2..4]);
        assert_eq!(&out[5..], &[(55 - 32) << 1, 0], "the rest null");
    }

    #[test]
    fn keys_pack_and_run() {
        let keys: Vec<u32> = [1, 2, 3].into_iter().chain([5; 20]).collect();
        let mut out = Vec::new();
        keys_hybrid(&keys, 3, &mut out);
        // One packed group (1, 2, 3, 5, 5, 5, 5, 5), then 15 fives.
        let packed: u32 = [1u32, 2, 3, 5, 5, 5, 5, 5]
            .iter()
            .enumerate()
            .map(|(i, &v)| v << (3 * i))
            .sum();
        let mut want = vec![(1 << 1) | 1];
        want.extend_from_slice(&packed.to_le_bytes()[..3]);
        want.extend_from_slice(&[15 << 1, 5]);
        assert_eq!(out, want);
    }

    #[test]
    fn uleb_and_zigzag() {
        let mut out = Vec::new();
        put_uleb(&mut out, 300);
        put_zigzag(&mut out, -1);
        put_zigzag(&mut out, 1);
        assert_eq!(out, [0xAC, 0x02, 1, 2]);
    }
}
