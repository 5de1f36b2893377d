//! The integer graph file format.
//!
//! ```text
//! offset 0   5 bytes  magic "NASI8"
//! offset 5   u32 LE   format version (currently 4; 1 had an int8 softmax output at 2^-7)
//! offset 9   u64 LE   payload length in bytes
//! offset 17  u32 LE   FNV-1a 32-bit hash of the version bytes then the payload (version 2:
//!                     of the payload only)
//! offset 21  payload  the Graph as JSON (serde_json)
//! ```
//! Loading checks, in order: magic, version, length (truncated / trailing bytes), checksum,
//! JSON decoding, then [`Graph::validate`]. Every failure is a typed [`QuantError`].

use std::path::Path;

use crate::error::{QuantError, Result};
use crate::graph::Graph;

/// File magic.
pub const MAGIC: &[u8; 5] = b"NASI8";
/// Current format version. Version 1 graphs stored softmax outputs as int8 at `2^-7`; version
/// 2 stores uint8 probabilities at `2^-8` (zero point -128), so a version-1 file would run
/// with the wrong scale and is refused. Version 3 adds the exact GELU table op
/// ([`crate::Op::GeluTable`]); a version-2 file is a valid version-3 graph and loads. Version 4
/// adds the softmax output shift ([`crate::ISoftmax::out_shift`], finer output steps for long
/// rows; absent = 0): older files load unchanged, and an older build refuses a version-4 file
/// rather than ignore the shift.
pub const FORMAT_VERSION: u32 = 4;
/// Header length in bytes.
pub const HEADER_LEN: usize = 21;

/// FNV-1a, 32 bit.
pub fn fnv1a32(data: &[u8]) -> u32 {
    fnv1a32_continue(0x811c_9dc5, data)
}

/// FNV-1a over `data` continuing from the hash `h` of the bytes before it.
fn fnv1a32_continue(mut h: u32, data: &[u8]) -> u32 {
    for &b in data {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The header's hash. Since version 3 it covers the version too, so a damaged version field
/// that names another readable version is caught.
fn checksum(version: u32, payload: &[u8]) -> u32 {
    if version < 3 {
        return fnv1a32(payload);
    }
    fnv1a32_continue(fnv1a32(&version.to_le_bytes()), payload)
}

/// Encodes a graph (validated first).
pub fn to_bytes(graph: &Graph) -> Result<Vec<u8>> {
    graph.validate()?;
    let payload = serde_json::to_vec(graph).map_err(|e| QuantError::Decode(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(FORMAT_VERSION, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes and validates a graph.
pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
    let n = bytes.len().min(MAGIC.len());
    if bytes[..n] != MAGIC[..n] {
        return Err(QuantError::BadMagic {
            found: bytes[..n].to_vec(),
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(QuantError::Truncated {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        });
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let version = u32_at(5);
    if version == 1 {
        return Err(QuantError::ObsoleteVersion {
            found: version,
            why: "its softmax outputs are int8 at 2^-7, now uint8 at 2^-8",
        });
    }
    if version == 0 || version > FORMAT_VERSION {
        return Err(QuantError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[9..17]);
    let len = u64::from_le_bytes(len8);
    let have = (bytes.len() - HEADER_LEN) as u64;
    if have < len {
        return Err(QuantError::Truncated {
            expected: HEADER_LEN as u64 + len,
            found: bytes.len() as u64,
        });
    }
    if have > len {
        return Err(QuantError::TrailingBytes { extra: have - len });
    }
    let payload = &bytes[HEADER_LEN..];
    let expected = u32_at(17);
    let found = checksum(version, payload);
    if expected != found {
        return Err(QuantError::Checksum { expected, found });
    }
    let graph: Graph =
        serde_json::from_slice(payload).map_err(|e| QuantError::Decode(e.to_string()))?;
    graph.validate()?;
    Ok(graph)
}

/// Writes a graph file.
pub fn save(graph: &Graph, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, to_bytes(graph)?).map_err(|e| QuantError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Reads a graph file.
pub fn load(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| QuantError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    from_bytes(&bytes)
}
