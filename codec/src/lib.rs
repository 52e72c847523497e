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
    /// A link of a chain that is not its last: laid out as version 2, and another stream
    /// must follow its trailer. A chain is version-3 links ending with one version-2 stream
    /// (a snapshot made of shared history segments and its own part, read as one file); a lone
    /// version-2 stream is a chain of one. A reader that knows only versions 1 and 2 refuses a
    /// chain instead of reading only its first link, and a chain cut at a link's end is
    /// refused as truncated.
    pub const STREAM_VERSION_CHAINED: u8 = 3;
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
            Self::with_version(inner, STREAM_VERSION)
        }

        /// Starts a link of a chain that other streams follow ([`STREAM_VERSION_CHAINED`]).
        pub fn chained(inner: W) -> io::Result<Self> {
            Self::with_version(inner, STREAM_VERSION_CHAINED)
        }

        fn with_version(inner: W, version: u8) -> io::Result<Self> {
            let mut w = Self { inner, hasher: Sha256::new(), frames: 0 };
            w.put(MAGIC)?;
            w.put(&[version])?;
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

    /// SHA-256 of `bytes`, in hex.
    pub fn sha256_hex(bytes: &[u8]) -> String {
        hex_of(&Sha256::digest(bytes))
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The summary of a chain made of streams with these summaries, in order: the frames of
    /// all, and the SHA-256 of their checksums' bytes one after the other. What [`verify`]
    /// returns for the chain read as one file.
    pub fn chain_summary<'a>(links: impl IntoIterator<Item = &'a Summary>) -> Summary {
        let mut h = Sha256::new();
        let mut frames = 0;
        for s in links {
            frames += s.frames;
            for i in (0..s.checksum.len()).step_by(2) {
                h.update([u8::from_str_radix(&s.checksum[i..i + 2], 16).unwrap_or(0)]);
            }
        }
        Summary { frames, checksum: hex_of(&h.finalize()) }
    }

    /// How a [`Reader`] treats the end of a stream.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        /// One stream of version 1 or 2, nothing after it.
        Plain,
        /// A chain: version-3 links, then a version-2 stream, nothing after it.
        Chain,
        /// One link of any version, nothing after it (a history segment's own file).
        Link,
    }

    /// Reads a stream frame by frame; at the end marker it checks the trailer.
    pub struct Reader<R: Read> {
        inner: R,
        hasher: Sha256,
        frames: u64,
        version: u8,
        done: Option<Summary>,
        mode: Mode,
        /// The summaries of the links of a chain read so far.
        links: Vec<Summary>,
    }

    impl<R: Read> Reader<R> {
        /// Reads and checks the header of a stream or of a chain's first link.
        pub fn new(inner: R) -> io::Result<Self> {
            let mut r = Self { inner, hasher: Sha256::new(), frames: 0, version: 0, done: None, mode: Mode::Plain, links: Vec::new() };
            r.header(None)?;
            if r.version == STREAM_VERSION_CHAINED {
                r.mode = Mode::Chain;
            }
            Ok(r)
        }

        /// Reads one link of a chain on its own (version 2 or 3): the file of a history
        /// segment. Its summary is the link's own.
        pub fn link(inner: R) -> io::Result<Self> {
            let mut r = Self::new(inner)?;
            r.mode = Mode::Link;
            Ok(r)
        }

        /// Reads and checks a header; `first` is its magic's first byte when already read.
        fn header(&mut self, first: Option<u8>) -> io::Result<()> {
            let mut magic = [0u8; 8];
            match first {
                Some(b) => {
                    magic[0] = b;
                    self.hasher.update([b]);
                    self.take(&mut magic[1..])?;
                }
                None => self.take(&mut magic)?,
            }
            if &magic != MAGIC {
                return Err(bad("not a roster snapshot"));
            }
            let mut v = [0u8; 1];
            self.take(&mut v)?;
            let known = [STREAM_VERSION, STREAM_VERSION_NO_TRAILER, STREAM_VERSION_CHAINED];
            if !known.contains(&v[0]) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, CodecError::UnsupportedVersion { found: v[0] }));
            }
            if self.mode == Mode::Chain && v[0] == STREAM_VERSION_NO_TRAILER {
                return Err(bad("a version 1 stream inside a chain"));
            }
            self.version = v[0];
            Ok(())
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
                if self.done.is_none() {
                    // Another link of the chain follows.
                    return self.frame();
                }
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
            let more = self.inner.read(&mut extra)? != 0;
            if self.mode != Mode::Chain {
                if more {
                    return Err(bad("bytes after the snapshot's trailer"));
                }
                self.done = Some(summary);
                return Ok(());
            }
            self.links.push(summary);
            let last = self.version != STREAM_VERSION_CHAINED;
            match (last, more) {
                (true, true) => Err(bad("bytes after the last stream of a chain")),
                (true, false) => {
                    self.done = Some(chain_summary(&self.links));
                    Ok(())
                }
                (false, false) => Err(bad("the chain ends after a link that says more follow (truncated file)")),
                (false, true) => {
                    // The next link; its magic starts with the byte just read.
                    self.frames = 0;
                    self.header(Some(extra[0]))
                }
            }
        }

        /// The checked summary, once [`Reader::frame`] returned `None`.
        pub fn summary(&self) -> Option<&Summary> {
            self.done.as_ref()
        }
    }

    /// Reads a whole stream (or chain) and checks its structure and trailers.
    pub fn verify(r: impl Read) -> io::Result<Summary> {
        let mut reader = Reader::new(r)?;
        while reader.frame()?.is_some() {}
        Ok(reader.summary().cloned().expect("set at the end marker"))
    }

    /// Reads one link of a chain on its own ([`Reader::link`]) and checks it.
    pub fn verify_link(r: impl Read) -> io::Result<Summary> {
        let mut reader = Reader::link(r)?;
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

        fn link(version3: bool, frames: &[(&[u8], &[u8])]) -> (Vec<u8>, Summary) {
            let mut w = if version3 { Writer::chained(Vec::new()).unwrap() } else { Writer::new(Vec::new()).unwrap() };
            for (k, v) in frames {
                w.frame(0, k, v).unwrap();
            }
            w.finish().unwrap()
        }

        #[test]
        fn a_chain_reads_as_one_stream_and_a_cut_anywhere_is_refused() {
            let (a, sa) = link(true, &[(b"1", b"one"), (b"2", b"two")]);
            let (b, sb) = link(true, &[]);
            let (c, sc) = link(false, &[(b"x", b"rest")]);
            let chain = [a.clone(), b.clone(), c.clone()].concat();
            let mut r = Reader::new(&chain[..]).unwrap();
            let mut keys = Vec::new();
            while let Some((_, k, _)) = r.frame().unwrap() {
                keys.push(k);
            }
            assert_eq!(keys, vec![b"1".to_vec(), b"2".to_vec(), b"x".to_vec()]);
            let whole = r.summary().unwrap().clone();
            assert_eq!(whole, chain_summary([&sa, &sb, &sc]));
            assert_eq!(whole.frames, 3);
            // Cut anywhere, including at the end of a link, it is refused.
            for len in 0..chain.len() {
                assert!(verify(&chain[..len]).is_err(), "a chain cut to {len} bytes was accepted");
            }
            // A link read on its own has its own summary; the last link alone is a plain stream.
            assert_eq!(verify_link(&a[..]).unwrap(), sa);
            assert_eq!(verify(&c[..]).unwrap(), sc);
            assert!(verify(&a[..]).is_err(), "a link that says more follow is not a whole stream");
            let mut longer = chain.clone();
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
