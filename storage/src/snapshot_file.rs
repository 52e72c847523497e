//! [`SnapshotFile`]: the snapshot data handed to openraft — one file, or several read as one.
//!
//! A snapshot built here is a chain of files: the history segments it shares with earlier
//! snapshots, then its own file with everything else (see [`crate::snapshot`]). openraft reads
//! it as one seekable byte stream to send it in chunks; the receiver writes the chunks into
//! one plain file. Reads and writes are positioned (`pread`/`pwrite`) on the calling thread:
//! a chunk is at most openraft's snapshot chunk size, read from the page cache or the disk.

use std::fs::File;
use std::io::{self, SeekFrom};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// One or more files read back to back as one stream; a single file can also be written.
#[derive(Debug)]
pub struct SnapshotFile {
    /// Each part and its length (fixed for a chain; a single writable file grows).
    parts: Vec<(File, u64)>,
    pos: u64,
}

impl SnapshotFile {
    /// One file, readable and (if opened so) writable.
    pub fn single(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { parts: vec![(file, len)], pos: 0 })
    }

    /// Files read one after the other, with the lengths they have now.
    pub fn chain(files: Vec<File>) -> io::Result<Self> {
        let mut parts = Vec::with_capacity(files.len());
        for f in files {
            let len = f.metadata()?.len();
            parts.push((f, len));
        }
        Ok(Self { parts, pos: 0 })
    }

    /// The total length in bytes.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|(_, l)| l).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file, when this is a single one (a received snapshot).
    pub fn as_single(&self) -> Option<&File> {
        match self.parts.as_slice() {
            [(f, _)] => Some(f),
            _ => None,
        }
    }

    /// How many files it reads.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Reads at the current position into `buf`, at most to the end of the part it falls in.
    fn read_here(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut start = 0u64;
        for (file, len) in &self.parts {
            if self.pos < start + len {
                let offset = self.pos - start;
                let want = ((len - offset) as usize).min(buf.len());
                let n = file.read_at(&mut buf[..want], offset)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a snapshot file is shorter than it was when opened"));
                }
                self.pos += n as u64;
                return Ok(n);
            }
            start += len;
        }
        Ok(0)
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.read_here(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let [(file, len)] = this.parts.as_mut_slice() else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, "a chain of snapshot files is read-only")));
        };
        let n = file.write_at(buf, this.pos)?;
        this.pos += n as u64;
        *len = (*len).max(this.pos);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match position {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => this.len().checked_add_signed(d),
            SeekFrom::Current(d) => this.pos.checked_add_signed(d),
        };
        this.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of a snapshot"))?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    fn file_with(dir: &std::path::Path, name: &str, bytes: &[u8]) -> File {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        File::open(p).unwrap()
    }

    #[tokio::test]
    async fn a_chain_reads_as_one_stream_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let parts = vec![file_with(dir.path(), "a", b"hello "), file_with(dir.path(), "b", b""), file_with(dir.path(), "c", b"world")];
        let mut chain = SnapshotFile::chain(parts).unwrap();
        assert_eq!(chain.seek(SeekFrom::End(0)).await.unwrap(), 11);
        for start in 0..=11u64 {
            chain.seek(SeekFrom::Start(start)).await.unwrap();
            let mut out = Vec::new();
            chain.read_to_end(&mut out).await.unwrap();
            assert_eq!(out, &b"hello world"[start as usize..]);
        }
        assert!(chain.write_all(b"x").await.is_err(), "a chain is read-only");
    }

    #[tokio::test]
    async fn a_single_file_is_written_at_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("recv");
        let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&p).unwrap();
        let mut s = SnapshotFile::single(f).unwrap();
        s.write_all(b"abcdef").await.unwrap();
        s.seek(SeekFrom::Start(3)).await.unwrap();
        s.write_all(b"XYZ!").await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcXYZ!");
        s.seek(SeekFrom::Start(0)).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abcXYZ!");
    }
}
