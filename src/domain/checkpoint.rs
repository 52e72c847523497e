//! Signed tree heads in the transparency ecosystem's own format: a C2SP `tlog-checkpoint`
//! (origin, tree size, base64 root) inside a C2SP `signed-note` with an Ed25519 signature
//! line. Keys and verifier keys use the text forms of Go's `golang.org/x/mod/sumdb/note`, so
//! existing note tooling reads them. `docs/history-format.md` section 5 is the specification.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

use super::history::Hash;

/// The signed-note signature type of Ed25519.
const SIG_ED25519: u8 = 0x01;
/// What starts a signature line: U+2014 EM DASH and a space.
const SIG_LINE_PREFIX: &str = "\u{2014} ";
/// A note with more signature lines than this is refused (as Go's note package does).
pub const NOTE_SIGNATURES_MAX: usize = 100;
/// The largest note accepted for verification.
pub const NOTE_BYTES_MAX: usize = 1 << 20;

/// Why a key, verifier key or note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    BadKey(String),
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("the note has no signature by {0}")]
    Unsigned(String),
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
}

/// The 4-byte key id: `SHA-256(name || 0x0A || 0x01 || public key)[..4]`.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', SIG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A key name must be non-empty and hold no whitespace and no `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control()) {
        return Err(NoteError::BadKey(format!("{name:?}: a key name is non-empty, without spaces or '+'")));
    }
    Ok(())
}

/// The cluster's history signing key.
pub struct HistoryKey {
    name: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for HistoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HistoryKey({})", self.name)
    }
}

impl HistoryKey {
    /// A key named `name` from a 32-byte Ed25519 seed (the caller draws it at random).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| NoteError::BadKey(e.to_string()))?;
        Ok(Self { name: name.to_string(), seed, pair })
    }

    /// Parses the private key text `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text.trim().strip_prefix("PRIVATE+KEY+").ok_or_else(|| NoteError::BadKey("a private key starts with PRIVATE+KEY+".into()))?;
        let (name, id, key) = split_key(rest)?;
        let bytes = B64.decode(key).map_err(|e| NoteError::BadKey(format!("base64: {e}")))?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&SIG_ED25519, seed)) => seed.try_into().map_err(|_| NoteError::BadKey("an Ed25519 seed is 32 bytes".into()))?,
            _ => return Err(NoteError::BadKey("not an Ed25519 key (type 0x01)".into())),
        };
        let key = Self::from_seed(name, seed)?;
        if key.id() != id {
            return Err(NoteError::BadKey("the key id does not match the key".into()));
        }
        Ok(key)
    }

    /// The private key text [`HistoryKey::parse`] reads.
    pub fn private_text(&self) -> String {
        let mut raw = vec![SIG_ED25519];
        raw.extend_from_slice(&self.seed);
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex::encode(self.id()), B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn public(&self) -> [u8; 32] {
        self.pair.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes")
    }

    fn id(&self) -> [u8; 4] {
        key_id(&self.name, &self.public())
    }

    /// The verifier key that checks this key's signatures.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey { name: self.name.clone(), id: self.id(), public: self.public() }
    }

    /// Signs note `text` (which ends with a newline): the text, a blank line, the signature line.
    pub fn sign_note(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n') && !text.contains("\n\n"));
        let mut sig = self.id().to_vec();
        sig.extend_from_slice(self.pair.sign(text.as_bytes()).as_ref());
        format!("{text}\n{SIG_LINE_PREFIX}{} {}\n", self.name, B64.encode(sig))
    }

    /// The signed checkpoint of a tree of `size` leaves with root `root`; the origin is the
    /// key name.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> String {
        self.sign_note(&Checkpoint { origin: self.name.clone(), size, root: *root }.text())
    }
}

/// Splits `<name>+<hex id>+<key>`, checking the name and the id's form.
fn split_key(text: &str) -> Result<(&str, [u8; 4], &str), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected <name>+<key id>+<key>".into()));
    };
    check_key_name(name)?;
    let mut out = [0u8; 4];
    if id.len() != 8 || hex::decode_to_slice(id, &mut out).is_err() {
        return Err(NoteError::BadKey(format!("{id:?} is not a key id of 8 hex digits")));
    }
    Ok((name, out, key))
}

/// A public key that verifies notes: `<name>+<hex id>+<base64(0x01 || public key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    pub public: [u8; 32],
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![SIG_ED25519];
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }
}

impl VerifierKey {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_key(text.trim())?;
        let bytes = B64.decode(key).map_err(|e| NoteError::BadKey(format!("base64: {e}")))?;
        let public: [u8; 32] = match bytes.split_first() {
            Some((&SIG_ED25519, p)) => p.try_into().map_err(|_| NoteError::BadKey("an Ed25519 public key is 32 bytes".into()))?,
            _ => return Err(NoteError::BadKey("not an Ed25519 key (type 0x01)".into())),
        };
        if key_id(name, &public) != id {
            return Err(NoteError::BadKey("the key id does not match the key".into()));
        }
        Ok(Self { name: name.to_string(), id, public })
    }

    /// Checks a signed note and returns its text. Lines signed by other keys (a witness's
    /// cosignature) are ignored; a line of this key that does not verify rejects the note.
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        if note.len() > NOTE_BYTES_MAX {
            return Err(NoteError::Malformed(format!("longer than {NOTE_BYTES_MAX} bytes")));
        }
        let split = note.rfind("\n\n").ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("the signature block does not end with a newline".into()));
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > NOTE_SIGNATURES_MAX {
            return Err(NoteError::Malformed(format!("more than {NOTE_SIGNATURES_MAX} signatures")));
        }
        for line in lines {
            let rest = line.strip_prefix(SIG_LINE_PREFIX).ok_or_else(|| NoteError::Malformed(format!("{line:?} is not a signature line")))?;
            let (name, sig) = rest.split_once(' ').ok_or_else(|| NoteError::Malformed(format!("{line:?} is not a signature line")))?;
            let raw = B64.decode(sig).map_err(|e| NoteError::Malformed(format!("signature of {name}: {e}")))?;
            if name != self.name || raw.len() < 4 || raw[..4] != self.id {
                continue;
            }
            return match UnparsedPublicKey::new(&ED25519, &self.public).verify(text.as_bytes(), &raw[4..]) {
                Ok(()) => Ok(text),
                Err(_) => Err(NoteError::BadSignature(self.name.clone())),
            };
        }
        Err(NoteError::Unsigned(self.name.clone()))
    }

    /// Verifies a signed checkpoint and parses it; its origin must be this key's name.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let cp = Checkpoint::parse(self.open(note)?)?;
        if cp.origin != self.name {
            return Err(NoteError::BadCheckpoint(format!("origin {:?} is not the key's name {:?}", cp.origin, self.name)));
        }
        Ok(cp)
    }
}

/// A tree head: the C2SP checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, one per line.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root.0))
    }

    /// Parses a note text (extension lines after the first three are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::BadCheckpoint(m.to_string());
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no tree size line"))?;
        if size.is_empty() || (size.len() > 1 && size.starts_with('0')) || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the tree size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the tree size is too large"))?;
        let root = B64.decode(lines.next().ok_or_else(|| bad("no root hash line"))?).map_err(|e| bad(&format!("root hash: {e}")))?;
        let root: [u8; 32] = root.try_into().map_err(|_| bad("the root hash is not 32 bytes"))?;
        Ok(Self { origin: origin.to_string(), size, root: Hash(root) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HistoryKey {
        HistoryKey::from_seed("roster-history/test", [7u8; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_verifier_key_and_round_trips() {
        let k = key();
        let root = Hash([9u8; 32]);
        let note = k.sign_checkpoint(42, &root);
        assert!(note.starts_with("roster-history/test\n42\nCQkJ"));
        let vkey = VerifierKey::parse(&k.verifier().to_string()).unwrap();
        assert_eq!(vkey.open_checkpoint(&note).unwrap(), Checkpoint { origin: k.name().into(), size: 42, root });
        let again = HistoryKey::parse(&k.private_text()).unwrap();
        assert_eq!(again.sign_checkpoint(42, &root), note, "Ed25519 signing is deterministic");
    }

    #[test]
    fn tampered_notes_and_foreign_keys_are_refused() {
        let k = key();
        let vkey = k.verifier();
        let note = k.sign_checkpoint(42, &Hash([9u8; 32]));
        assert_eq!(vkey.open(&note.replace("\n42\n", "\n43\n")), Err(NoteError::BadSignature(k.name().into())));
        let other = HistoryKey::from_seed("roster-history/other", [8u8; 32]).unwrap();
        assert_eq!(other.verifier().open(&note), Err(NoteError::Unsigned("roster-history/other".into())));
        // A cosignature by another key is ignored.
        let cosigned = format!("{note}\u{2014} witness AAAAAAAA\n");
        assert!(vkey.open(&cosigned).is_ok());
        assert!(matches!(vkey.open("no signatures"), Err(NoteError::Malformed(_))));
        assert!(VerifierKey::parse("name+00000000+AQ==").is_err());
        assert!(HistoryKey::from_seed("two words", [1u8; 32]).is_err());
    }

    /// A verifier key and signed note published with Go's `golang.org/x/mod/sumdb/note`
    /// documentation: the formats are the ecosystem's, not ours.
    #[test]
    fn a_note_signed_by_go_tooling_verifies() {
        let vkey = VerifierKey::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        assert_eq!(vkey.open(note).unwrap(), text);
        // Go's private key text reads here and signs the same bytes.
        let skey = HistoryKey::parse("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz").unwrap();
        assert_eq!(skey.sign_note(text), note);
        assert_eq!(skey.verifier(), vkey);
    }
}
