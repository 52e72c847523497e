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

/// The streamed snapshot format: a header (magic + stream version), then frames of
/// `(section, key, value)`, then an end marker and a trailer (frame count and SHA-256 of every
/// byte before the trailer). Written and read incrementally, so a snapshot of any size needs
/// only one frame in memory; the trailer lets a reader tell a complete, intact file from a
/// truncated or damaged one before it trusts any of it.
///
/// Stream version 1 (written before the trailer existed) is still read; it has no trailer, so
/// only its structure can be checked.
pub mod stream {
    use std::io::{self, Read, Write};

    use sha2::{Digest, Sha256};

    use super::CodecError;

    const MAGIC: &[u8; 8] = b"RSTRSNAP";
    const END: u8 = 0xFF;
    /// The stream version written by this build: 2 = frames + end marker + trailer.
    pub const STREAM_VERSION: u8 = 2;
    /// The oldest stream version still read (no trailer).
    const STREAM_VERSION_NO_TRAILER: u8 = 1;
    /// Largest key or value accepted in a frame; larger means a corrupt stream.
    pub const FRAME_PART_MAX_BYTES: u32 = 256 << 20;

    fn bad(msg: impl Into<String>) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, CodecError::Malformed(msg.into()))
    }

    /// What a complete stream holds, as its trailer states it (and a reader checked it).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Summary {
        pub frames: u64,
        /// SHA-256 of every byte before the trailer (hex); empty for version 1 streams.
        pub checksum: String,
    }

    /// Writes a stream, hashing every byte and counting frames for the trailer.
    pub struct Writer<W: Write> {
        inner: W,
        hasher: Sha256,
        frames: u64,
    }

    impl<W: Write> Writer<W> {
        /// Starts a stream by writing its header.
        pub fn new(inner: W) -> io::Result<Self> {
            let mut w = Self { inner, hasher: Sha256::new(), frames: 0 };
            w.put(MAGIC)?;
            w.put(&[STREAM_VERSION])?;
            Ok(w)
        }

        fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.hasher.update(bytes);
            self.inner.write_all(bytes)
        }

        pub fn frame(&mut self, section: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
            assert!(section != END, "section {END} is the end marker");
            self.put(&[section])?;
            self.put(&(key.len() as u32).to_le_bytes())?;
            self.put(key)?;
            self.put(&(value.len() as u32).to_le_bytes())?;
            self.put(value)?;
            self.frames += 1;
            Ok(())
        }

        /// Writes the end marker and the trailer; returns the inner writer and the summary.
        pub fn finish(mut self) -> io::Result<(W, Summary)> {
            self.put(&[END])?;
            let digest = self.hasher.finalize_reset();
            self.inner.write_all(&self.frames.to_le_bytes())?;
            self.inner.write_all(&digest)?;
            Ok((self.inner, Summary { frames: self.frames, checksum: hex_of(&digest) }))
        }
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a stream frame by frame; at the end marker it checks the trailer.
    pub struct Reader<R: Read> {
        inner: R,
        hasher: Sha256,
        frames: u64,
        version: u8,
        done: Option<Summary>,
    }

    impl<R: Read> Reader<R> {
        /// Reads and checks the header.
        pub fn new(inner: R) -> io::Result<Self> {
            let mut r = Self { inner, hasher: Sha256::new(), frames: 0, version: 0, done: None };
            let mut magic = [0u8; 8];
            r.take(&mut magic)?;
            if &magic != MAGIC {
                return Err(bad("not a roster snapshot"));
            }
            let mut v = [0u8; 1];
            r.take(&mut v)?;
            if v[0] != STREAM_VERSION && v[0] != STREAM_VERSION_NO_TRAILER {
                return Err(io::Error::new(io::ErrorKind::InvalidData, CodecError::UnsupportedVersion { found: v[0] }));
            }
            r.version = v[0];
            Ok(r)
        }

        fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
            self.inner.read_exact(buf).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => bad("the snapshot ends early (truncated file)"),
                _ => e,
            })?;
            self.hasher.update(&*buf);
            Ok(())
        }

        fn part(&mut self) -> io::Result<Vec<u8>> {
            let mut len = [0u8; 4];
            self.take(&mut len)?;
            let len = u32::from_le_bytes(len);
            if len > FRAME_PART_MAX_BYTES {
                return Err(bad(format!("frame part of {len} bytes")));
            }
            let mut buf = vec![0u8; len as usize];
            self.take(&mut buf)?;
            Ok(buf)
        }

        /// The next frame, or `None` after the end marker and a trailer that matches.
        pub fn frame(&mut self) -> io::Result<Option<(u8, Vec<u8>, Vec<u8>)>> {
            if self.done.is_some() {
                return Ok(None);
            }
            let mut section = [0u8; 1];
            self.take(&mut section)?;
            if section[0] == END {
                self.finish()?;
                return Ok(None);
            }
            let key = self.part()?;
            let value = self.part()?;
            self.frames += 1;
            Ok(Some((section[0], key, value)))
        }

        fn finish(&mut self) -> io::Result<()> {
            let digest = self.hasher.finalize_reset();
            let summary = if self.version == STREAM_VERSION_NO_TRAILER {
                Summary { frames: self.frames, checksum: String::new() }
            } else {
                let mut count = [0u8; 8];
                let mut sum = [0u8; 32];
                self.inner.read_exact(&mut count).map_err(|_| bad("the snapshot's trailer is missing (truncated file)"))?;
                self.inner.read_exact(&mut sum).map_err(|_| bad("the snapshot's trailer is cut short (truncated file)"))?;
                let count = u64::from_le_bytes(count);
                if count != self.frames {
                    return Err(bad(format!("the trailer counts {count} records, the file holds {}", self.frames)));
                }
                if sum[..] != digest[..] {
                    return Err(bad(format!(
                        "checksum mismatch: the trailer says {}, the content hashes to {}",
                        hex_of(&sum),
                        hex_of(&digest)
                    )));
                }
                Summary { frames: count, checksum: hex_of(&sum) }
            };
            let mut extra = [0u8; 1];
            if self.inner.read(&mut extra)? != 0 {
                return Err(bad("bytes after the snapshot's trailer"));
            }
            self.done = Some(summary);
            Ok(())
        }

        /// The checked summary, once [`Reader::frame`] returned `None`.
        pub fn summary(&self) -> Option<&Summary> {
            self.done.as_ref()
        }
    }

    /// Reads a whole stream and checks its structure and trailer.
    pub fn verify(r: impl Read) -> io::Result<Summary> {
        let mut reader = Reader::new(r)?;
        while reader.frame()?.is_some() {}
        Ok(reader.summary().cloned().expect("set at the end marker"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn sample() -> Vec<u8> {
            let mut w = Writer::new(Vec::new()).unwrap();
            w.frame(0, b"k1", b"v1").unwrap();
            w.frame(3, b"k2", &[7u8; 100]).unwrap();
            w.finish().unwrap().0
        }

        #[test]
        fn a_stream_round_trips_and_its_trailer_checks() {
            let bytes = sample();
            let mut r = Reader::new(&bytes[..]).unwrap();
            assert_eq!(r.frame().unwrap(), Some((0, b"k1".to_vec(), b"v1".to_vec())));
            assert_eq!(r.frame().unwrap().unwrap().0, 3);
            assert_eq!(r.frame().unwrap(), None);
            assert_eq!(r.summary().unwrap().frames, 2);
        }

        #[test]
        fn damage_anywhere_is_detected() {
            let bytes = sample();
            // Every truncation, including an empty file, is refused.
            for len in 0..bytes.len() {
                assert!(verify(&bytes[..len]).is_err(), "truncated to {len} bytes accepted");
            }
            // Every single flipped byte is refused.
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x20;
                assert!(verify(&b[..]).is_err(), "byte {i} flipped accepted");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(verify(&longer[..]).is_err());
        }

        #[test]
        fn version_1_streams_without_a_trailer_are_still_read() {
            let mut v1 = MAGIC.to_vec();
            v1.push(1);
            v1.extend_from_slice(&[2, 1, 0, 0, 0, b'k', 1, 0, 0, 0, b'v', END]);
            let s = verify(&v1[..]).unwrap();
            assert_eq!(s.frames, 1);
        }
    }
}
