//! Blockwise run-length sparse coding of int8 weight matrices (TinyFormer, Sec. III-D1).
//!
//! A weight matrix of `rows x cols` int8 values (row-major, one row per output channel, the
//! reduction dimension along `cols`) is cut, row by row, into blocks of `block` consecutive
//! weights. Block `j` of a row covers columns `j*block .. min((j+1)*block, cols)`; only the last
//! block of a row can be shorter than `block` (when `cols % block != 0`). A block is *nonzero*
//! when any of its weights is nonzero. Nonzero blocks are stored as entries
//! `(dis: u8, val_1 .. val_w: i8)` where `w` is the width of that block (`block`, or the shorter
//! tail width for the last block of a row).
//!
//! `dis` is the number of all-zero blocks skipped since the previous stored entry of the same
//! row (for the first entry of a row: since the start of the row). Decoding keeps a block cursor
//! that starts at 0 for every row; for each entry: `cursor += dis`, the entry's values are block
//! `cursor`, then `cursor += 1`. When more than 255 zero blocks separate two nonzero blocks, a
//! *zero entry* is inserted: `dis = 255` followed by `w` zero bytes, which stands for the all-zero
//! block 255 positions after the cursor (it decodes to zeros, so it is harmless). A gap of `g`
//! zero blocks therefore costs `g / 256` inserted entries (integer division). Zero blocks after
//! the last nonzero block of a row are never stored.
//!
//! # Byte layout (all multi-byte integers little endian)
//! ```text
//! offset  size        field
//! 0       4           magic "BRLE"
//! 4       1           version = 1
//! 5       1           block (1..=255)
//! 6       2           reserved = 0
//! 8       4           rows (u32, >= 1)
//! 12      4           cols (u32, >= 1)
//! 16      2 * rows    entry count of each row (u16), rows in order; counts zero entries too
//! 16+2r   ...         entries of row 0, then row 1, ..., each entry = 1 + w bytes
//! ```
//! Rows are delimited by the per-row entry count table: a C decoder reads `count[r]` entries for
//! row `r`, resetting its block cursor to 0 at the start of every row. The total size is
//! `HEADER_BYTES + 2 * rows + sum(1 + w)` over entries, which is exactly [`coded_size_bytes`].
//!
//! # Size accounting against Eq. 5
//! With `cols % block == 0`, `N = rows * cols` weights, `n_nz` nonzero blocks and block
//! sparsity `rho = 1 - n_nz * block / N`, Eq. 5 predicts a payload of
//! `N (1 - rho)(1 + 1/b) = n_nz (b + 1)` bytes ([`eq5_payload_bytes`]). The exact coded size is
//! that plus `(b + 1)` bytes per inserted zero entry plus the fixed [`HEADER_BYTES`] plus
//! `2 * rows` bytes of row table ([`SizeBreakdown`]).
//!
//! # Self-adaptive storage
//! [`choose_storage`] keeps a layer dense (`rows * cols` bytes, no header) unless its coded size
//! is strictly smaller, following TinyFormer's self-adaptive rule.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Fixed header size in bytes (magic, version, block, reserved, rows, cols).
pub const HEADER_BYTES: usize = 16;
/// Bytes of the per-row entry count table, per row.
pub const ROW_TABLE_BYTES_PER_ROW: usize = 2;
/// Largest skip a single entry can encode.
pub const MAX_DIS: usize = 255;
/// Largest matrix (`rows * cols`) the coder accepts, so a hostile header cannot make
/// [`decode`] allocate without bound.
pub const MAX_ELEMS: usize = 1 << 30;
const MAGIC: [u8; 4] = *b"BRLE";
const VERSION: u8 = 1;

/// Errors of the blockwise RLE coder; each names the offending field and what was expected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RleError {
    #[error("rle: `{field}` must be >= 1, got 0")]
    ZeroDimension { field: &'static str },
    #[error("rle: `block` must be in 1..=255, got {block}")]
    InvalidBlock { block: usize },
    #[error("rle: `weights` has {len} values but rows * cols = {rows} * {cols} = {expected}")]
    ShapeMismatch {
        len: usize,
        rows: usize,
        cols: usize,
        expected: usize,
    },
    #[error("rle: row {row} needs {entries} entries, more than the u16 row table allows (65535)")]
    TooManyEntries { row: usize, entries: usize },
    #[error(
        "rle: `{field}` = {value} is too large (rows and cols must fit u32, rows * cols <= 2^30)"
    )]
    DimensionTooLarge { field: &'static str, value: usize },
    #[error(
        "rle: truncated stream: `{field}` needs {needed} bytes at offset {offset}, stream has {len}"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("rle: header field `{field}`: expected {expected}, found {found}")]
    BadHeader {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "rle: row {row}: entry {entry} addresses block {block} but the row has {blocks} blocks"
    )]
    BlockOutOfRange {
        row: usize,
        entry: usize,
        block: usize,
        blocks: usize,
    },
    #[error("rle: {extra} trailing bytes after the last row")]
    TrailingBytes { extra: usize },
    #[error("rle: sparsity `rho` must be in [0, 1], got {rho}")]
    InvalidSparsity { rho: f64 },
}

/// An encoded matrix. `payload` holds the entries of all rows back to back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    pub rows: usize,
    pub cols: usize,
    pub block: usize,
    /// Entries (nonzero blocks + inserted zero entries) per row.
    pub row_entries: Vec<u16>,
    /// Concatenated entries `(dis, values..)` of every row.
    pub payload: Vec<u8>,
    /// Number of nonzero blocks stored (excludes inserted zero entries).
    pub nonzero_blocks: usize,
    /// Number of inserted zero entries (gaps longer than 255 blocks).
    pub zero_entries: usize,
}

/// Exact size decomposition of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeBreakdown {
    pub header: usize,
    pub row_table: usize,
    /// Bytes of entries holding nonzero blocks (`dis` + values).
    pub nonzero_payload: usize,
    /// Bytes of inserted zero entries.
    pub zero_entry_payload: usize,
}

impl SizeBreakdown {
    pub fn total(&self) -> usize {
        self.header + self.row_table + self.nonzero_payload + self.zero_entry_payload
    }
}

/// How a layer's weights are stored after the self-adaptive rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Dense { bytes: usize },
    Sparse(Encoded),
}

impl Storage {
    pub fn size_bytes(&self) -> usize {
        match self {
            Storage::Dense { bytes } => *bytes,
            Storage::Sparse(e) => coded_size_bytes(e),
        }
    }
}

fn check_shape(len: usize, rows: usize, cols: usize, block: usize) -> Result<(), RleError> {
    if rows == 0 {
        return Err(RleError::ZeroDimension { field: "rows" });
    }
    if cols == 0 {
        return Err(RleError::ZeroDimension { field: "cols" });
    }
    if block == 0 || block > 255 {
        return Err(RleError::InvalidBlock { block });
    }
    for (field, value) in [("rows", rows), ("cols", cols)] {
        if u32::try_from(value).is_err() {
            return Err(RleError::DimensionTooLarge { field, value });
        }
    }
    let expected =
        rows.checked_mul(cols)
            .filter(|&n| n <= MAX_ELEMS)
            .ok_or(RleError::DimensionTooLarge {
                field: "rows * cols",
                value: rows.saturating_mul(cols),
            })?;
    if len != expected {
        return Err(RleError::ShapeMismatch {
            len,
            rows,
            cols,
            expected,
        });
    }
    Ok(())
}

/// Width of block `j` in a row of `cols` columns.
fn block_width(j: usize, cols: usize, block: usize) -> usize {
    block.min(cols - j * block)
}

/// Encode a row-major `rows x cols` matrix with blocks of `block` weights along `cols`.
pub fn encode(weights: &[i8], rows: usize, cols: usize, block: usize) -> Result<Encoded, RleError> {
    check_shape(weights.len(), rows, cols, block)?;
    let blocks_per_row = cols.div_ceil(block);
    let mut out = Encoded {
        rows,
        cols,
        block,
        row_entries: Vec::with_capacity(rows),
        payload: Vec::new(),
        nonzero_blocks: 0,
        zero_entries: 0,
    };
    for (r, row) in weights.chunks_exact(cols).enumerate() {
        let mut entries = 0usize;
        let mut cursor = 0usize; // next block index the decoder would fill
        for j in 0..blocks_per_row {
            let w = block_width(j, cols, block);
            let vals = &row[j * block..j * block + w];
            if vals.iter().all(|&v| v == 0) {
                continue;
            }
            let mut gap = j - cursor;
            while gap > MAX_DIS {
                // Zero entry standing for block `cursor + 255`.
                let zw = block_width(cursor + MAX_DIS, cols, block);
                out.payload.push(MAX_DIS as u8);
                out.payload.extend(std::iter::repeat_n(0u8, zw));
                out.zero_entries += 1;
                entries += 1;
                cursor += MAX_DIS + 1;
                gap = j - cursor;
            }
            out.payload.push(gap as u8);
            out.payload.extend(vals.iter().map(|&v| v as u8));
            out.nonzero_blocks += 1;
            entries += 1;
            cursor = j + 1;
        }
        let count =
            u16::try_from(entries).map_err(|_| RleError::TooManyEntries { row: r, entries })?;
        out.row_entries.push(count);
    }
    Ok(out)
}

/// Decode back to the row-major int8 matrix. Validates every entry against the shape.
pub fn decode(enc: &Encoded) -> Result<Vec<i8>, RleError> {
    if enc.row_entries.len() != enc.rows {
        return Err(RleError::BadHeader {
            field: "row_entries",
            expected: format!("{} rows", enc.rows),
            found: format!("{} rows", enc.row_entries.len()),
        });
    }
    check_shape(
        enc.rows.saturating_mul(enc.cols),
        enc.rows,
        enc.cols,
        enc.block,
    )?;
    let (rows, cols, block) = (enc.rows, enc.cols, enc.block);
    let blocks_per_row = cols.div_ceil(block);
    let mut out = vec![0i8; rows * cols];
    let p = &enc.payload;
    let mut pos = 0usize;
    for r in 0..rows {
        let mut cursor = 0usize;
        for e in 0..enc.row_entries[r] as usize {
            let dis = *p.get(pos).ok_or(RleError::Truncated {
                field: "dis",
                offset: pos,
                needed: 1,
                len: p.len(),
            })? as usize;
            pos += 1;
            cursor += dis;
            if cursor >= blocks_per_row {
                return Err(RleError::BlockOutOfRange {
                    row: r,
                    entry: e,
                    block: cursor,
                    blocks: blocks_per_row,
                });
            }
            let w = block_width(cursor, cols, block);
            let vals = p.get(pos..pos + w).ok_or(RleError::Truncated {
                field: "values",
                offset: pos,
                needed: w,
                len: p.len(),
            })?;
            let dst = &mut out[r * cols + cursor * block..r * cols + cursor * block + w];
            for (d, &v) in dst.iter_mut().zip(vals) {
                *d = v as i8;
            }
            pos += w;
            cursor += 1;
        }
    }
    if pos != p.len() {
        return Err(RleError::TrailingBytes {
            extra: p.len() - pos,
        });
    }
    Ok(out)
}

/// Exact serialized size of an encoding (header + row table + entries).
pub fn coded_size_bytes(enc: &Encoded) -> usize {
    HEADER_BYTES + ROW_TABLE_BYTES_PER_ROW * enc.rows + enc.payload.len()
}

/// Exact decomposition of [`coded_size_bytes`]. A zero entry always stands for a full-width
/// block (a nonzero block follows it in the same row), so it costs exactly `block + 1` bytes.
pub fn size_breakdown(enc: &Encoded) -> SizeBreakdown {
    let zero_entry_payload = enc.zero_entries * (enc.block + 1);
    SizeBreakdown {
        header: HEADER_BYTES,
        row_table: ROW_TABLE_BYTES_PER_ROW * enc.rows,
        nonzero_payload: enc.payload.len() - zero_entry_payload,
        zero_entry_payload,
    }
}

/// Eq. 5 of TinyFormer: compression ratio `eta = 1 / ((1 - rho)(1 + 1/b))`.
pub fn eq5_ratio(rho: f64, b: usize) -> f64 {
    1.0 / ((1.0 - rho) * (1.0 + 1.0 / b as f64))
}

/// Payload bytes Eq. 5 predicts for `n` weights at block sparsity `rho`: `n (1-rho)(1+1/b)`.
pub fn eq5_payload_bytes(n: usize, rho: f64, b: usize) -> f64 {
    n as f64 / eq5_ratio(rho, b)
}

/// Blocks a pruner zeroes out of `blocks` for block sparsity `rho`: the nearest whole number
/// (half a block away at most). The pruner (`pruning`) and [`predicted_size_bytes`] share this
/// rule, so the cost model predicts the coded size of a pruned layer exactly.
pub fn pruned_blocks(blocks: usize, rho: f64) -> usize {
    ((rho * blocks as f64).round() as usize).min(blocks)
}

/// Size formula without the weights: the coded size of a `rows x cols` matrix of which
/// [`pruned_blocks`]`(blocks, rho)` blocks are zero, assuming no gap exceeds 255 blocks (no zero
/// entries; exact whenever `cols % block == 0` and `cols / block <= 256`). Used by the cost
/// model.
pub fn predicted_size_bytes(
    rows: usize,
    cols: usize,
    block: usize,
    rho: f64,
) -> Result<usize, RleError> {
    if !(0.0..=1.0).contains(&rho) || rho.is_nan() {
        return Err(RleError::InvalidSparsity { rho });
    }
    check_shape(rows.saturating_mul(cols), rows, cols, block)?;
    let blocks_per_row = cols.div_ceil(block);
    let total_blocks = rows * blocks_per_row;
    let nz = total_blocks - pruned_blocks(total_blocks, rho);
    // Average entry width: full blocks, except the tail block of each row.
    let tail = cols - (blocks_per_row - 1) * block;
    let avg_w = (cols as f64) / blocks_per_row as f64;
    let payload = if tail == block {
        nz * (block + 1)
    } else {
        (nz as f64 * (avg_w + 1.0)).ceil() as usize
    };
    Ok(HEADER_BYTES + ROW_TABLE_BYTES_PER_ROW * rows + payload)
}

/// TinyFormer's self-adaptive rule: sparse only where strictly smaller than dense.
pub fn choose_storage(
    weights: &[i8],
    rows: usize,
    cols: usize,
    block: usize,
) -> Result<Storage, RleError> {
    let enc = encode(weights, rows, cols, block)?;
    let dense = rows * cols;
    Ok(if coded_size_bytes(&enc) < dense {
        Storage::Sparse(enc)
    } else {
        Storage::Dense { bytes: dense }
    })
}

impl Encoded {
    /// Serialize with the documented byte layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(coded_size_bytes(self));
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(self.block as u8);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&(self.rows as u32).to_le_bytes());
        b.extend_from_slice(&(self.cols as u32).to_le_bytes());
        for &n in &self.row_entries {
            b.extend_from_slice(&n.to_le_bytes());
        }
        b.extend_from_slice(&self.payload);
        b
    }

    /// Parse the documented byte layout; validates header and entry bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Encoded, RleError> {
        let need = |field, offset: usize, needed: usize| {
            if bytes.len() < offset + needed {
                Err(RleError::Truncated {
                    field,
                    offset,
                    needed,
                    len: bytes.len(),
                })
            } else {
                Ok(())
            }
        };
        need("header", 0, HEADER_BYTES)?;
        if bytes[0..4] != MAGIC {
            return Err(RleError::BadHeader {
                field: "magic",
                expected: "BRLE".into(),
                found: format!("{:?}", &bytes[0..4]),
            });
        }
        if bytes[4] != VERSION {
            return Err(RleError::BadHeader {
                field: "version",
                expected: VERSION.to_string(),
                found: bytes[4].to_string(),
            });
        }
        let block = bytes[5] as usize;
        let rows = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let cols = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        if block == 0 {
            return Err(RleError::InvalidBlock { block });
        }
        if rows == 0 {
            return Err(RleError::ZeroDimension { field: "rows" });
        }
        if cols == 0 {
            return Err(RleError::ZeroDimension { field: "cols" });
        }
        need("row_table", HEADER_BYTES, rows.saturating_mul(2))?;
        let row_entries: Vec<u16> = bytes[HEADER_BYTES..HEADER_BYTES + 2 * rows]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let payload = bytes[HEADER_BYTES + 2 * rows..].to_vec();
        let mut enc = Encoded {
            rows,
            cols,
            block,
            row_entries,
            payload,
            nonzero_blocks: 0,
            zero_entries: 0,
        };
        // Validate by decoding; then recount nonzero / zero entries.
        decode(&enc)?;
        let (nz, z) = count_entries(&enc);
        enc.nonzero_blocks = nz;
        enc.zero_entries = z;
        Ok(enc)
    }
}

fn count_entries(enc: &Encoded) -> (usize, usize) {
    let blocks_per_row = enc.cols.div_ceil(enc.block);
    let (mut nz, mut z, mut pos) = (0, 0, 0);
    for &n in &enc.row_entries {
        let mut cursor = 0;
        for _ in 0..n {
            cursor += enc.payload[pos] as usize;
            let w = block_width(cursor.min(blocks_per_row - 1), enc.cols, enc.block);
            if enc.payload[pos + 1..pos + 1 + w].iter().all(|&v| v == 0) {
                z += 1;
            } else {
                nz += 1;
            }
            pos += 1 + w;
            cursor += 1;
        }
    }
    (nz, z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Matrix with nonzero blocks chosen by `mask` (one bit per block), values nonzero inside.
    fn from_mask(rows: usize, cols: usize, block: usize, mask: &[bool], seed: u8) -> Vec<i8> {
        let bpr = cols.div_ceil(block);
        let mut w = vec![0i8; rows * cols];
        for r in 0..rows {
            for j in 0..bpr {
                if mask[(r * bpr + j) % mask.len()] {
                    for c in j * block..(j * block + block).min(cols) {
                        let v = ((r * 31 + c * 7) as u8).wrapping_add(seed) as i8;
                        w[r * cols + c] = if v == 0 { 1 } else { v };
                    }
                }
            }
        }
        w
    }

    #[test]
    fn hand_example_layout() {
        // 1 row, 6 cols, block 2: blocks [1,2] [0,0] [0,3] -> entries (0,1,2) (1,0,3)
        let w = [1i8, 2, 0, 0, 0, 3];
        let e = encode(&w, 1, 6, 2).unwrap();
        assert_eq!(e.payload, vec![0, 1, 2, 1, 0, 3]);
        assert_eq!(e.row_entries, vec![2]);
        let bytes = e.to_bytes();
        assert_eq!(&bytes[0..4], b"BRLE");
        assert_eq!(bytes.len(), coded_size_bytes(&e));
        assert_eq!(bytes.len(), 16 + 2 + 6);
        assert_eq!(decode(&Encoded::from_bytes(&bytes).unwrap()).unwrap(), w);
    }

    #[test]
    fn gap_of_exactly_255_and_256_blocks() {
        for gap in [255usize, 256, 511, 512, 1000] {
            let cols = gap + 2;
            let mut w = vec![0i8; cols];
            w[0] = 5;
            w[cols - 1] = -7;
            let e = encode(&w, 1, cols, 1).unwrap();
            assert_eq!(e.zero_entries, gap / 256, "gap {gap}");
            assert_eq!(decode(&e).unwrap(), w);
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            encode(&[0; 6], 2, 2, 1).unwrap_err(),
            RleError::ShapeMismatch {
                len: 6,
                rows: 2,
                cols: 2,
                expected: 4
            }
        );
        assert!(
            encode(&[0; 4], 2, 2, 0)
                .unwrap_err()
                .to_string()
                .contains("block")
        );
        assert!(
            encode(&[], 0, 2, 1)
                .unwrap_err()
                .to_string()
                .contains("rows")
        );
        assert!(
            Encoded::from_bytes(b"BRL")
                .unwrap_err()
                .to_string()
                .contains("header")
        );
        let mut bytes = encode(&[1, 0, 0, 1], 1, 4, 1).unwrap().to_bytes();
        bytes[16 + 2] = 200; // dis beyond the row
        assert!(matches!(
            Encoded::from_bytes(&bytes),
            Err(RleError::BlockOutOfRange { row: 0, .. })
        ));
        assert!(predicted_size_bytes(4, 4, 2, 1.5).is_err());
        // A hostile header cannot request a huge allocation.
        let mut h = encode(&[1], 1, 1, 1).unwrap().to_bytes();
        h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let r = Encoded::from_bytes(&h);
        assert!(
            matches!(r, Err(RleError::DimensionTooLarge { .. })),
            "{r:?}"
        );
    }

    #[test]
    fn eq5_values() {
        assert!((eq5_ratio(0.0, 1) - 0.5).abs() < 1e-12);
        assert!((eq5_ratio(0.5, 4) - 1.6).abs() < 1e-12);
        assert!((eq5_ratio(0.75, 8) - 4.0 / 1.125).abs() < 1e-12);
    }

    #[test]
    fn self_adaptive_rule() {
        let dense: Vec<i8> = (0..64).map(|i| (i % 7 + 1) as i8).collect();
        assert_eq!(
            choose_storage(&dense, 4, 16, 4).unwrap(),
            Storage::Dense { bytes: 64 }
        );
        let mut sparse = vec![0i8; 64 * 64];
        sparse[5] = 3;
        let s = choose_storage(&sparse, 64, 64, 4).unwrap();
        assert!(matches!(s, Storage::Sparse(_)));
        assert!(s.size_bytes() < 64 * 64);
    }

    fn shape() -> impl Strategy<Value = (usize, usize, usize)> {
        (
            1usize..6,
            1usize..700,
            prop::sample::select(vec![1usize, 2, 4, 8]),
        )
    }

    proptest! {
        #[test]
        fn round_trip_random_masks(
            (rows, cols, block) in shape(),
            mask in prop::collection::vec(prop::bool::weighted(0.2), 1..64),
            seed in any::<u8>(),
        ) {
            let w = from_mask(rows, cols, block, &mask, seed);
            let e = encode(&w, rows, cols, block).unwrap();
            prop_assert_eq!(decode(&e).unwrap(), w.clone());
            let bytes = e.to_bytes();
            prop_assert_eq!(bytes.len(), coded_size_bytes(&e));
            let back = Encoded::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &e);
            prop_assert_eq!(size_breakdown(&e).total(), coded_size_bytes(&e));
        }

        #[test]
        fn long_gaps_all_zero_all_dense(
            rows in 1usize..4,
            blocks in 250usize..1100,
            block in prop::sample::select(vec![1usize, 2, 4, 8]),
            kind in 0u8..3,
            first in any::<bool>(),
        ) {
            let cols = blocks * block;
            let mut w = vec![0i8; rows * cols];
            match kind {
                0 => {} // all zero
                1 => w.iter_mut().enumerate().for_each(|(i, v)| *v = ((i % 100) + 1) as i8),
                _ => for r in 0..rows {
                    // nonzero only at the last block (and the first one if `first`): gap > 255
                    w[r * cols + cols - 1] = -1;
                    if first { w[r * cols] = 1; }
                },
            }
            let e = encode(&w, rows, cols, block).unwrap();
            prop_assert_eq!(decode(&e).unwrap(), w);
            match kind {
                0 => prop_assert_eq!(coded_size_bytes(&e), HEADER_BYTES + 2 * rows),
                1 => prop_assert_eq!(coded_size_bytes(&e), HEADER_BYTES + 2 * rows + rows * blocks * (block + 1)),
                _ => {
                    let gap = if first { blocks - 2 } else { blocks - 1 };
                    prop_assert_eq!(e.zero_entries, rows * (gap / 256));
                }
            }
        }

        /// Exact accounting: coded size = Eq. 5 payload + (b+1) per zero entry + header + row table.
        #[test]
        fn size_matches_eq5_plus_overhead(
            rows in 1usize..5,
            blocks in 1usize..600,
            block in prop::sample::select(vec![1usize, 2, 4, 8]),
            mask in prop::collection::vec(prop::bool::weighted(0.1), 1..300),
            seed in any::<u8>(),
        ) {
            let cols = blocks * block;
            let w = from_mask(rows, cols, block, &mask, seed);
            let e = encode(&w, rows, cols, block).unwrap();
            let n = rows * cols;
            let rho = 1.0 - (e.nonzero_blocks * block) as f64 / n as f64;
            let eq5 = eq5_payload_bytes(n, rho, block);
            let overhead = e.zero_entries * (block + 1) + HEADER_BYTES + 2 * rows;
            prop_assert!((coded_size_bytes(&e) as f64 - (eq5 + overhead as f64)).abs() < 1e-6,
                "coded {} eq5 {} overhead {}", coded_size_bytes(&e), eq5, overhead);
            let br = size_breakdown(&e);
            prop_assert_eq!(br.nonzero_payload, e.nonzero_blocks * (block + 1));
            prop_assert_eq!(br.zero_entry_payload, e.zero_entries * (block + 1));
            if blocks <= 256 {
                prop_assert_eq!(predicted_size_bytes(rows, cols, block, rho).unwrap(), coded_size_bytes(&e));
            }
        }
    }
}
