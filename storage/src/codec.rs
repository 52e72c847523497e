//! The versioned record codec: the one module that turns persisted records and Raft RPC
//! payloads into bytes and back.
//!
//! Every encoding starts with a one-byte format version followed by a bincode 2 body in its
//! standard configuration. Decoding checks the version, so data written by an older build stays
//! readable (add a branch per retired version) and data from a newer build is refused with a
//! clear error instead of being misread. Switching serializers later touches only this file.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The format version written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty input: a record needs at least its format version byte")]
    Empty,
    #[error("unsupported format version {found}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { found: u8 },
    #[error("malformed record: {0}")]
    Malformed(String),
    #[error("malformed record: {trailing} trailing bytes after the value")]
    TrailingBytes { trailing: usize },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` with the current format version.
///
/// # Panics
/// Only on a programmer error: a type whose `Serialize` impl bincode cannot express (for example
/// a sequence of unknown length). Every persisted type is a plain struct or enum.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .expect("roster types are always bincode-encodable");
    out
}

/// Decodes bytes produced by [`encode`] (of this or an older supported version).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        1 => {
            let (value, read) = bincode::serde::decode_from_slice(body, config())
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            if read != body.len() {
                return Err(CodecError::TrailingBytes { trailing: body.len() - read });
            }
            Ok(value)
        }
        found => Err(CodecError::UnsupportedVersion { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_checks() {
        let v: (u64, String, Option<Vec<u8>>) = (7, "rt1".into(), Some(vec![1, 2]));
        let bytes = encode(&v);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(u64, String, Option<Vec<u8>>)>(&bytes).unwrap(), v);

        let mut newer = bytes.clone();
        newer[0] = 99;
        assert!(matches!(
            decode::<(u64, String, Option<Vec<u8>>)>(&newer),
            Err(CodecError::UnsupportedVersion { found: 99 })
        ));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        let mut trailing = encode(&5u64);
        trailing.push(0);
        assert!(matches!(decode::<u64>(&trailing), Err(CodecError::TrailingBytes { .. })));
    }
}

/// The streamed snapshot format: a header (magic + format version), then frames of
/// `(section, key, value)`, then an end marker. Written and read incrementally, so a snapshot
/// of any size needs only one frame in memory.
pub mod stream {
    use std::io::{self, Read, Write};

    use super::{CodecError, FORMAT_VERSION};

    const MAGIC: &[u8; 8] = b"RSTRSNAP";
    const END: u8 = 0xFF;
    /// Largest key or value accepted in a frame; larger means a corrupt stream.
    pub const FRAME_PART_MAX_BYTES: u32 = 256 << 20;

    pub fn write_header(w: &mut impl Write) -> io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&[FORMAT_VERSION])
    }

    pub fn write_frame(w: &mut impl Write, section: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
        assert!(section != END, "section {END} is the end marker");
        w.write_all(&[section])?;
        w.write_all(&(key.len() as u32).to_le_bytes())?;
        w.write_all(key)?;
        w.write_all(&(value.len() as u32).to_le_bytes())?;
        w.write_all(value)
    }

    pub fn write_end(w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[END])
    }

    fn bad(msg: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, CodecError::Malformed(msg.into()))
    }

    pub fn read_header(r: &mut impl Read) -> io::Result<()> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a roster snapshot"));
        }
        let mut v = [0u8; 1];
        r.read_exact(&mut v)?;
        if v[0] != FORMAT_VERSION {
            return Err(io::Error::new(io::ErrorKind::InvalidData, CodecError::UnsupportedVersion { found: v[0] }));
        }
        Ok(())
    }

    fn read_part(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len);
        if len > FRAME_PART_MAX_BYTES {
            return Err(bad(format!("frame part of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        r.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The next frame, or `None` at the end marker.
    pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>, Vec<u8>)>> {
        let mut section = [0u8; 1];
        r.read_exact(&mut section)?;
        if section[0] == END {
            return Ok(None);
        }
        let key = read_part(r)?;
        let value = read_part(r)?;
        Ok(Some((section[0], key, value)))
    }
}
