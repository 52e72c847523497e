#!/usr/bin/env python3
"""Reference verifier for Roster's history format (format 2).

Written only from docs/history-format.md ("the spec"; section numbers below refer to it),
with the Python 3 standard library and the `cryptography` package for Ed25519.

  verify_history.py chain EXPORT [--checkpoint HEAD.txt] [--continues OLD.txt] \
                           [--key KEY.vkey]
  verify_history.py inclusion --checkpoint HEAD.txt --key KEY.vkey --record REC.json \
                               --proof PROOF.json
  verify_history.py consistency --old OLD.txt --new NEW.txt --key KEY.vkey \
                                 --proof PROOF.json

Exit status: 0 verified; 1 verification failed (stderr says where); 2 usage error or input
this verifier cannot check (unreadable file, bad verifier key, non-integer numbers).
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KNOWN_FORMAT = 2

class Failure(Exception):
    """Ends the run. code 1: verification failed; code 2: cannot check."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code

def fail(message):
    raise Failure(1, message)

def cannot_check(message):
    raise Failure(2, message)

class Unsupported(Exception):
    """A value this verifier does not canonicalize: floats, NaN, lone surrogates."""


# --- JSON input and canonical JSON (section 3: RFC 8785, narrowed to Roster's values) ---

def _reject_float(text):
    raise Unsupported(f"number {text} is not an integer (this verifier only handles integers)")

def _object_without_duplicates(pairs):
    # RFC 8785 needs I-JSON input: a member name may occur only once per object.
    obj = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"duplicate member name {name!r}")
        obj[name] = value
    return obj

def parse_json(text, where):
    """Parse JSON exactly: integers stay Python ints (no rounding), floats are refused."""
    try:
        return json.loads(text, parse_float=_reject_float, parse_constant=_reject_float,
                          object_pairs_hook=_object_without_duplicates)
    except Unsupported as e:
        cannot_check(f"{where}: {e}")
    except ValueError as e:                      # includes json.JSONDecodeError
        fail(f"{where}: not valid JSON: {e}")


# The only short escapes; every other character below U+0020 becomes \u00xx (lowercase).
_ESCAPES = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f',
            '\r': '\\r'}

def _string(s):
    try:
        s.encode("utf-8")                        # a lone surrogate ("\ud800") is not UTF-8
    except UnicodeEncodeError:
        raise Unsupported("a string holds a lone UTF-16 surrogate")
    # '/', U+007F and all non-ASCII characters are written as themselves.
    return '"' + "".join(_ESCAPES.get(c) or ("\\u%04x" % ord(c) if c < " " else c)
                         for c in s) + '"'

def _canonical(v):
    if v is None:
        return "null"
    if isinstance(v, bool):                      # before int: True/False are ints in Python
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)                            # plain decimal: no '+', leading zeros, exponent
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ",".join(_canonical(x) for x in v) + "]"
    if isinstance(v, dict):
        # Members sorted by name compared as UTF-16 code units (RFC 8785 section 3.2.3).
        names = sorted(v, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_string(k) + ":" + _canonical(v[k]) for k in names) + "}"
    raise Unsupported(f"a {type(v).__name__} value cannot be canonicalized")

def canonical_bytes(value):
    """The canonical JSON of `value` as UTF-8 bytes. No whitespace is ever emitted."""
    return _canonical(value).encode("utf-8")


# --- RFC 9162 Merkle tree (section 4) ---------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()

def leaf_hash(data):
    return sha256(b"\x00" + data)                # = a record's hash (section 3)

def node_hash(left, right):
    return sha256(b"\x01" + left + right)

def merkle_root(leaves):
    """Root of a list of leaf hashes, following the recursive definition of section 4."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)   # largest power of two < len(leaves)
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))

class CompactRange:
    """The right edge of a growing tree: [size, hash] of each complete subtree, largest
    (leftmost) first; the sizes are the set bits of the tree size. append() is O(log n)
    and root() gives the same root as merkle_root() over all leaves appended so far."""

    def __init__(self, size=0, subtrees=()):
        self.size, self.subtrees = size, list(subtrees)

    def append(self, leaf):
        self.subtrees.append([1, leaf])
        self.size += 1
        # Two neighbouring subtrees of equal size merge into one twice as large.
        while len(self.subtrees) > 1 and self.subtrees[-2][0] == self.subtrees[-1][0]:
            size, right = self.subtrees.pop()
            self.subtrees[-1] = [2 * size, node_hash(self.subtrees[-1][1], right)]

    def root(self):
        if not self.subtrees:
            return sha256(b"")
        root = self.subtrees[-1][1]
        for _, left in reversed(self.subtrees[:-1]):   # fold right to left
            root = node_hash(left, root)
        return root

    @classmethod
    def from_right_edge(cls, size, last_hash, audit_path):
        """Section 7 step 3: the edge of a tree of `size` leaves, from the hash of its last
        leaf and that leaf's verified audit path."""
        z = (size & -size).bit_length() - 1             # trailing zero bits of size
        last = last_hash
        for p in audit_path[:z]:                         # last subtree: 2^z leaves
            last = node_hash(p, last)
        left_bits = [b for b in range(size.bit_length() - 1, z, -1) if size >> b & 1]
        left_hashes = audit_path[z:][::-1]               # last first = largest first
        assert len(left_bits) == len(left_hashes), "audit path of the wrong length"
        subtrees = [[1 << b, h] for b, h in zip(left_bits, left_hashes)] + [[1 << z, last]]
        return cls(size, subtrees)

def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2: does `path` prove `leaf` is leaf `index` of (size, root)?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root

def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 section 2.1.4.2: does `proof` show (first, first_root) is a prefix of
    (second, second_root)? For first == second the proof must be empty, the roots equal."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    if first & (first - 1) == 0:                 # first is an exact power of two
        proof = [first_root] + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


# --- Checks of single values ------------------------------------------------------------

def is_hex_hash(v):
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)

def is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0

def hex_hash(v, where):
    if not is_hex_hash(v):
        fail(f"{where} is not 64 lowercase hex digits")
    return bytes.fromhex(v)

def hex_list(v, where):
    if not isinstance(v, list):
        fail(f"{where} is not an array")
    return [hex_hash(h, f"{where}[{i}]") for i, h in enumerate(v)]

def members(obj, names, where):
    """Require exactly the members `names`; return their values in that order."""
    if not isinstance(obj, dict) or set(obj) != set(names):
        fail(f"{where}: expected an object with exactly the members {', '.join(names)}")
    return [obj[n] for n in names]

def count(v, where):
    if not is_count(v):
        fail(f"{where} is not a non-negative integer")
    return v

def strict_b64(s):
    """Standard base64 with padding, canonical spelling only (raises ValueError)."""
    data = base64.b64decode(s, validate=True)
    if base64.b64encode(data).decode("ascii") != s:
        raise ValueError("non-canonical base64")
    return data


# --- Records (sections 1 and 3) ---------------------------------------------------------

RECORD_MEMBERS = {               # member -> test of its value (section 1)
    "format": is_count, "revision": is_count, "log_term": is_count, "log_index": is_count,
    "time_ms": is_count, "actor": lambda v: isinstance(v, str),
    "comment": lambda v: isinstance(v, str),
    "changeset": lambda v: v is None or isinstance(v, str),
    "idempotency_key": lambda v: v is None or isinstance(v, str),
    "events": lambda v: isinstance(v, list), "prev_hash": is_hex_hash, "hash": is_hex_hash,
}

def check_record(record, where):
    """Check one record by itself: its format, its members, and that `hash` is the hash
    of its content. Returns (revision, prev_hash, hash), the hashes as bytes."""
    if not isinstance(record, dict):
        fail(f"{where}: not a JSON object")
    if "format" not in record:          # section 1: stop, do not skip or guess
        fail(f"{where}: record without a format member (written before format "
             f"{KNOWN_FORMAT}; re-export it from an upgraded cluster)")
    if not is_count(record["format"]) or record["format"] != KNOWN_FORMAT:
        fail(f"{where}: unknown record format {json.dumps(record['format'])} "
             f"(this verifier knows format {KNOWN_FORMAT})")
    if not is_count(record.get("revision")) or record["revision"] < 1:
        fail(f"{where}: revision is missing or not a positive integer")
    where = f"{where}: revision {record['revision']}"
    for name, valid in RECORD_MEMBERS.items():
        if name not in record:
            fail(f"{where}: missing member {name!r}")
        if not valid(record[name]):
            fail(f"{where}: member {name!r} has the wrong type or form")
    for name in record.keys() - RECORD_MEMBERS.keys():
        fail(f"{where}: unexpected member {name!r} (not in format {KNOWN_FORMAT})")
    # The record bytes: canonical JSON of the record without its `hash` member.
    try:
        computed = leaf_hash(canonical_bytes({k: v for k, v in record.items() if k != "hash"}))
    except Unsupported as e:
        cannot_check(f"{where}: {e}")
    if computed.hex() != record["hash"]:
        fail(f"{where}: hash does not match its content")
    return record["revision"], bytes.fromhex(record["prev_hash"]), computed


# --- Verifier key and signed checkpoints (section 5: C2SP signed-note + tlog-checkpoint) 

def read_bytes(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        cannot_check(f"cannot read {path}: {e.strerror}")

def read_text(path, what):
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{what} {path}: not valid UTF-8")

class VerifierKey:
    """`<name>+<key id, 8 hex digits>+<base64(0x01 || 32-byte Ed25519 public key)>`.
    The auditor's own trusted input, so any problem with it is a usage error (exit 2)."""

    def __init__(self, path):
        try:
            text = read_bytes(path).decode("utf-8").strip()
            name, key_id_hex, key_b64 = text.split("+", 2)   # base64 itself may hold '+'
            key_id, blob = bytes.fromhex(key_id_hex), strict_b64(key_b64)
        except ValueError:
            cannot_check(f"key {path}: not a verifier key line <name>+<key id>+<key>")
        if not name or any(c.isspace() for c in name):
            cannot_check(f"key {path}: the key name is empty or holds whitespace")
        if len(key_id) != 4 or len(blob) != 33 or blob[0] != 0x01:   # 0x01 = Ed25519
            cannot_check(f"key {path}: not an Ed25519 verifier key")
        if sha256(name.encode("utf-8") + b"\n" + blob)[:4] != key_id:
            cannot_check(f"key {path}: the key id does not match the key name and key")
        self.name, self.key_id = name, key_id
        self.public = Ed25519PublicKey.from_public_bytes(blob[1:])

class Checkpoint:
    """A signed checkpoint: the signature by `key` is verified before anything is read."""

    def __init__(self, path, key):
        where = self.where = f"checkpoint {path}"
        text = read_text(path, "checkpoint")
        # The note text ends at the LAST blank line and keeps its final newline (the
        # signature covers it); after the blank line come the signature lines.
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            fail(f"{where}: not a signed note (note text, blank line, signature lines)")
        note, signatures = text[:split + 1], text[split + 2:-1].split("\n")
        signed = False
        for n, line in enumerate(signatures, 1):
            # "— <key name> <base64(key id || signature)>", the dash being U+2014.
            name, _, sig_b64 = line[2:].rpartition(" ")
            try:
                blob = strict_b64(sig_b64)
            except ValueError:
                blob = b""
            if not line.startswith("\u2014 ") or not name or len(blob) < 5:
                fail(f"{where}: signature line {n} is malformed")
            if name != key.name or blob[:4] != key.key_id:
                continue                         # another key, e.g. a witness cosigning
            try:
                if len(blob) != 4 + 64:
                    raise InvalidSignature()
                key.public.verify(blob[4:], note.encode("utf-8"))
            except InvalidSignature:
                fail(f"{where}: the signature of {key.name} does not verify")
            signed = True
        if not signed:
            fail(f"{where}: no valid signature by {key.name}")
        # Signed text: origin, tree size, root; extension lines after them are ignored.
        lines = note[:-1].split("\n")
        if len(lines) < 3:
            fail(f"{where}: the note text must have origin, tree size and root lines")
        origin, size, root = lines[:3]
        if origin != key.name:
            fail(f"{where}: origin {origin!r} is not the key name {key.name!r}")
        if not (size.isascii() and size.isdigit()) or (size[0] == "0" and size != "0"):
            fail(f"{where}: tree size {size!r} is not a decimal number")
        try:
            self.root = strict_b64(root)
        except ValueError:
            self.root = b""
        if len(self.root) != 32:
            fail(f"{where}: root {root!r} is not a base64 SHA-256 hash")
        self.size = int(size)


# --- Subcommands ------------------------------------------------------------------------

def cmd_chain(args):
    if (args.checkpoint or args.continues) and not args.key:
        cannot_check("--checkpoint and --continues need --key KEY.vkey")
    key = VerifierKey(args.key) if args.key else None
    head = Checkpoint(args.checkpoint, key) if args.checkpoint else None    # newer, optional
    old = Checkpoint(args.continues, key) if args.continues else None      # section 7

    lines = read_bytes(args.export).split(b"\n")
    if lines[-1] == b"":
        lines.pop()                              # after the newline ending the last line
    for n, raw in enumerate(lines, 1):
        try:
            lines[n - 1] = raw.decode("utf-8")
        except UnicodeDecodeError:
            fail(f"line {n}: not valid UTF-8")
    first = parse_json(lines[0], "line 1") if lines else None
    is_header = isinstance(first, dict) and "continues" in first

    tree, prev_rev, prev_hash, skip = CompactRange(), 0, bytes(32), 0
    if old:
        # Section 7: check the header against the old checkpoint, without old records.
        if not is_header:
            cannot_check("line 1: --continues given, but the export has no continuation header")
        (cont,) = members(first, ["continues"], "line 1")
        m, last, path = members(cont, ["tree_size", "last_hash", "audit_path"],
                                "line 1: continues")
        m = count(m, "line 1: tree_size")
        last, path = hex_hash(last, "line 1: last_hash"), hex_list(path, "line 1: audit_path")
        if m != old.size:
            fail(f"line 1: the export continues after revision {m} but {old.where} "
                 f"covers {old.size} revisions")
        if not verify_inclusion(last, m - 1, m, path, old.root):
            fail(f"line 1: last_hash is not proven to be revision {m} of {old.where} "
                 f"(its audit path does not verify)")
        tree = CompactRange.from_right_edge(m, last, path)
        assert tree.root() == old.root           # follows from the inclusion proof
        prev_rev, prev_hash, skip = m, last, 1
    elif is_header:
        cannot_check("line 1: this is a continuation export; "
                     "give --continues OLD.txt --key KEY.vkey")
    if head and head.size < tree.size:
        cannot_check(f"{head.where} covers {head.size} revisions, fewer than the {tree.size} "
                     f"before this export; compare the two checkpoints with `consistency`")

    def compare_with_head():                     # once the tree reaches the checkpoint's size
        if head and tree.size == head.size and tree.root() != head.root:
            fail(f"the root of the first {head.size} revisions does not match "
                 f"the root of {head.where}")

    compare_with_head()
    first_rev = prev_rev + 1
    for n, text in enumerate(lines[skip:], skip + 1):
        if not text.strip():
            fail(f"line {n}: empty line")
        rev, record_prev, h = check_record(parse_json(text, f"line {n}"), f"line {n}")
        if rev != prev_rev + 1:
            fail(f"line {n}: revision {rev} follows revision {prev_rev}: "
                 f"records are missing or out of order")
        if record_prev != prev_hash and prev_rev == 0:
            fail(f"line {n}: revision 1: prev_hash is not 64 zeros")
        if record_prev != prev_hash:
            fail(f"line {n}: revision {rev}: prev_hash does not match the hash of "
                 f"revision {prev_rev}")
        tree.append(h)
        prev_rev, prev_hash = rev, h
        compare_with_head()
    if head and tree.size < head.size:
        fail(f"the export ends at revision {tree.size} but {head.where} "
             f"covers {head.size} revisions")

    span = f" ({first_rev}..{prev_rev})" if prev_rev >= first_rev else ""
    print(f"verified: {prev_rev - first_rev + 1} revisions checked{span}")
    if old:
        print(f"continues: {old.where} (size {old.size}) matches the continuation header")
    print(f"head hash: {prev_hash.hex() if prev_rev else '(no revisions)'}")
    print(f"tree root: {tree.root().hex()} (size {tree.size})")
    if head:
        print(f"matched:   {head.where} (size {head.size}, signed by {key.name})")

def cmd_inclusion(args):
    key = VerifierKey(args.key)
    head = Checkpoint(args.checkpoint, key)
    record_where = f"record {args.record}"
    record = parse_json(read_text(args.record, "record"), record_where)
    rev, _, h = check_record(record, record_where)
    pw = f"proof {args.proof}"
    names = ["revision", "leaf_index", "tree_size", "leaf_hash", "root_hash", "audit_path"]
    p_rev, index, size, leaf, root, path = members(
        parse_json(read_text(args.proof, "proof"), pw), names, pw)
    if count(p_rev, f"{pw}: revision") != rev:
        fail(f"{pw}: revision {p_rev} is not the record's revision {rev}")
    if count(index, f"{pw}: leaf_index") != rev - 1:
        fail(f"{pw}: leaf_index {index} is not revision {rev} - 1")
    if hex_hash(leaf, f"{pw}: leaf_hash") != h:
        fail(f"{pw}: leaf_hash is not the hash of revision {rev}")
    if count(size, f"{pw}: tree_size") != head.size:
        fail(f"{pw}: tree_size {size} is not the size of {head.where} ({head.size})")
    if rev > head.size:
        fail(f"{record_where}: revision {rev} is not in the tree of size {head.size}")
    if hex_hash(root, f"{pw}: root_hash") != head.root:
        fail(f"{pw}: root_hash is not the root of {head.where}")
    path = hex_list(path, f"{pw}: audit_path")
    if not verify_inclusion(h, rev - 1, head.size, path, head.root):
        fail(f"{pw}: the audit path does not lead from revision {rev} "
             f"to the root of {head.where}")
    print(f"verified: revision {rev} (hash {h.hex()}) is in the tree of size {head.size}")
    print(f"tree root: {head.root.hex()} ({head.where}, signed by {key.name})")

def cmd_consistency(args):
    key = VerifierKey(args.key)
    old, new = Checkpoint(args.old, key), Checkpoint(args.new, key)
    pw = f"proof {args.proof}"
    names = ["first", "second", "first_root", "second_root", "proof"]
    m, n, m_root, n_root, proof = members(parse_json(read_text(args.proof, "proof"), pw),
                                          names, pw)
    if count(m, f"{pw}: first") != old.size:
        fail(f"{pw}: first {m} is not the size of {old.where} ({old.size})")
    if count(n, f"{pw}: second") != new.size:
        fail(f"{pw}: second {n} is not the size of {new.where} ({new.size})")
    if hex_hash(m_root, f"{pw}: first_root") != old.root:
        fail(f"{pw}: first_root is not the root of {old.where}")
    if hex_hash(n_root, f"{pw}: second_root") != new.root:
        fail(f"{pw}: second_root is not the root of {new.where}")
    if old.size == 0 or old.size > new.size:     # the spec requires 0 < first <= second
        fail(f"{old.where} covers {old.size} revisions; it must cover at least 1 and at "
             f"most as many as {new.where} ({new.size})")
    proof = hex_list(proof, f"{pw}: proof")
    if not verify_consistency(old.size, new.size, old.root, new.root, proof):
        fail(f"{pw}: does not prove that the tree of size {old.size} is a prefix of the "
             f"tree of size {new.size}")
    print(f"verified: the tree of size {old.size} ({old.root.hex()}) is a prefix of the "
          f"tree of size {new.size} ({new.root.hex()}), both signed by {key.name}")

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Verify Roster history (format 2, see docs/history-format.md).",
        epilog="exit status: 0 verified, 1 verification failed, 2 usage or unreadable input")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("chain", help="check an export (JSON lines) record by record")
    p.add_argument("export", metavar="EXPORT", help="the export file, - for stdin")
    p.add_argument("--checkpoint", metavar="HEAD.txt", help="compare the root with it")
    p.add_argument("--continues", metavar="OLD.txt", help="the checkpoint this export continues")
    p.add_argument("--key", metavar="KEY.vkey", help="the verifier key (history-key.vkey)")
    p.set_defaults(run=cmd_chain)
    p = sub.add_parser("inclusion", help="check that one record is in a signed tree")
    for opt, metavar in (("--checkpoint", "HEAD.txt"), ("--key", "KEY.vkey"),
                         ("--record", "REC.json"), ("--proof", "PROOF.json")):
        p.add_argument(opt, metavar=metavar, required=True)
    p.set_defaults(run=cmd_inclusion)
    p = sub.add_parser("consistency", help="check that a signed tree is a prefix of a newer one")
    for opt, metavar in (("--old", "OLD.txt"), ("--new", "NEW.txt"), ("--key", "KEY.vkey"),
                         ("--proof", "PROOF.json")):
        p.add_argument(opt, metavar=metavar, required=True)
    p.set_defaults(run=cmd_consistency)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except Failure as f:
        print(("FAILED: " if f.code == 1 else "error: ") + str(f), file=sys.stderr)
        return f.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
