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
