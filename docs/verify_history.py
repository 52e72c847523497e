#!/usr/bin/env python3
"""Reference verifier for Roster's history format (format 2).

Written only from docs/history-format.md ("the spec"); section numbers below refer to it.
Needs Python 3 and the `cryptography` package (for Ed25519), nothing from Roster.

    verify_history.py chain EXPORT [--checkpoint HEAD.txt] [--continues OLD.txt] [--key KEY.vkey]
    verify_history.py inclusion --checkpoint HEAD.txt --key KEY.vkey --record REC.json --proof PROOF.json
    verify_history.py consistency --old OLD.txt --new NEW.txt --key KEY.vkey --proof PROOF.json

Exit status: 0 verified; 1 verification failed (the message on stderr says where);
2 usage error or input this verifier cannot read (missing file, bad key file, floats).
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KNOWN_FORMAT = 2
ZERO_HASH = "0" * 64


class Failure(Exception):
    """Stops the verifier: code 1 = verification failed, code 2 = cannot check."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def fail(message):
    raise Failure(1, message)


def cannot_check(message):
    raise Failure(2, message)


# ---------------------------------------------------------------------------------------
# Parsing and canonical JSON (section 3: RFC 8785 narrowed to Roster's values)
# ---------------------------------------------------------------------------------------

class Unsupported(Exception):
    """A value outside what this verifier canonicalizes (floats, NaN, lone surrogates)."""


class Malformed(Exception):
    """JSON that is not acceptable input for RFC 8785 (duplicate member names)."""


def _reject_float(text):
    raise Unsupported(f"number {text} is not an integer; this verifier only handles integers")


def _reject_constant(text):
    raise Unsupported(f"{text} is not JSON")


def _no_duplicates(pairs):
    obj = {}
    for name, value in pairs:
        if name in obj:
            raise Malformed(f"duplicate member name {name!r}")
        obj[name] = value
    return obj


def parse_json(text, where):
    """Parse JSON exactly: integers stay Python ints, floats are refused (exit 2)."""
    try:
        return json.loads(text, parse_float=_reject_float, parse_constant=_reject_constant,
                          object_pairs_hook=_no_duplicates)
    except Unsupported as e:
        cannot_check(f"{where}: {e}")
    except (Malformed, ValueError) as e:      # json.JSONDecodeError is a ValueError
        fail(f"{where}: not valid JSON: {e}")


# Short escapes allowed by section 3; every other control character becomes \u00xx.
_SHORT_ESCAPES = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\t': '\\t',
                  '\n': '\\n', '\f': '\\f', '\r': '\\r'}


def _canonical_string(s):
    try:
        s.encode("utf-8")            # a lone surrogate (from "\ud800") cannot be UTF-8
    except UnicodeEncodeError:
        raise Unsupported("string holds a lone UTF-16 surrogate, which is not valid Unicode")
    out = ['"']
    for ch in s:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))   # lowercase hex, e.g. \u001f
        else:
            out.append(ch)                     # '/', U+007F and non-ASCII as themselves
    out.append('"')
    return "".join(out)


def _canonical(value):
    # bool before int: in Python True/False are also ints.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)            # plain decimal, '-' only if negative, no exponent
    if isinstance(value, float):
        raise Unsupported("floating-point numbers are not canonicalized by this verifier")
    if isinstance(value, str):
        return _canonical_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        # Members sorted by name as sequences of UTF-16 code units (RFC 8785, 3.2.3).
        names = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_canonical_string(k) + ":" + _canonical(value[k])
                              for k in names) + "}"
    raise Unsupported(f"unexpected value of type {type(value).__name__}")


def canonical_bytes(value):
    """RFC 8785 canonical JSON of value, as UTF-8 bytes."""
    return _canonical(value).encode("utf-8")


# ---------------------------------------------------------------------------------------
# RFC 9162 Merkle tree (section 4)
# ---------------------------------------------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    return sha256(b"\x00" + data)          # a record's hash (section 3)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def merkle_root(leaves):
    """Root of a list of leaf hashes, straight from the recursive definition in section 4."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:                        # largest power of two smaller than n
        k *= 2
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


class CompactRange:
    """The right edge of a growing tree: the hashes of its complete (perfect) subtrees,
    largest (leftmost) first. Appending a leaf is O(log n); root() works at any size."""

    def __init__(self):
        self.size = 0
        self.subtrees = []                  # list of [subtree size, hash]

    def append(self, leaf):
        self.subtrees.append([1, leaf])
        self.size += 1
        # Two neighbouring subtrees of the same size merge into one twice as big.
        while len(self.subtrees) >= 2 and self.subtrees[-2][0] == self.subtrees[-1][0]:
            size, right = self.subtrees.pop()
            self.subtrees[-1] = [size * 2, node_hash(self.subtrees[-1][1], right)]

    def root(self):
        if not self.subtrees:
            return sha256(b"")
        root = self.subtrees[-1][1]
        for _, left in reversed(self.subtrees[:-1]):
            root = node_hash(left, root)
        return root

    @classmethod
    def from_right_edge(cls, size, last_hash, audit_path):
        """Section 7 step 3: rebuild the edge of the tree of `size` leaves from the last
        leaf's hash and its (already verified) audit path."""
        z = (size & -size).bit_length() - 1     # trailing zero bits of size
        last = last_hash
        for p in audit_path[:z]:                # the last complete subtree, 2^z leaves
            last = node_hash(p, last)
        higher_bits = [b for b in range(size.bit_length() - 1, z, -1) if size >> b & 1]
        left_hashes = list(reversed(audit_path[z:]))   # largest subtree first
        if len(left_hashes) != len(higher_bits):
            raise ValueError("audit path has the wrong length for this tree size")
        edge = cls()
        edge.size = size
        edge.subtrees = [[1 << b, h] for b, h in zip(higher_bits, left_hashes)]
        edge.subtrees.append([1 << z, last])
        return edge


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2: is `leaf` the leaf `index` of the tree with `root`?"""
    if index >= size:
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
    """RFC 9162 section 2.1.4.2: is the tree (first, first_root) a prefix of
    (second, second_root)? For first == second the proof must be empty."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    if first & (first - 1) == 0:            # first is an exact power of 2
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


# ---------------------------------------------------------------------------------------
# Small checkers for hex hashes and integers
# ---------------------------------------------------------------------------------------

def is_hex_hash(s):
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def hex_hash(s, where):
    if not is_hex_hash(s):
        fail(f"{where} is not 64 lowercase hex digits")
    return bytes.fromhex(s)


def hex_path(v, where):
    if not isinstance(v, list):
        fail(f"{where} is not an array")
    return [hex_hash(h, f"{where}[{i}]") for i, h in enumerate(v)]


def strict_b64(s):
    """Standard base64 with padding; only the canonical spelling is accepted."""
    data = base64.b64decode(s, validate=True)
    if base64.b64encode(data).decode("ascii") != s:
        raise ValueError("non-canonical base64")
    return data


# ---------------------------------------------------------------------------------------
# Records (sections 1 and 3)
# ---------------------------------------------------------------------------------------

RECORD_MEMBERS = {
    "format": "int", "revision": "int", "log_term": "int", "log_index": "int",
    "time_ms": "int", "actor": "str", "comment": "str", "changeset": "str?",
    "idempotency_key": "str?", "events": "list", "prev_hash": "hex", "hash": "hex",
}


def check_record(record, where):
    """Check one record on its own: format, members, and that `hash` matches its content.
    Returns (revision, prev_hash bytes, hash bytes). `where` locates it in messages."""
    if not isinstance(record, dict):
        fail(f"{where}: not a JSON object")
    if "format" not in record:
        fail(f"{where}: record without a format member (written before format "
             f"{KNOWN_FORMAT}; re-export it from an upgraded cluster)")
    if record["format"] != KNOWN_FORMAT or isinstance(record["format"], bool):
        fail(f"{where}: unknown record format {json.dumps(record['format'])} "
             f"(this verifier knows format {KNOWN_FORMAT})")
    rev = record.get("revision")
    if is_count(rev) and rev >= 1:
        where = f"{where}: revision {rev}"
    else:
        fail(f"{where}: revision is missing or not a positive integer")
    for name, kind in RECORD_MEMBERS.items():
        if name not in record:
            fail(f"{where}: missing member {name!r}")
        v = record[name]
        ok = {"int": is_count(v), "str": isinstance(v, str), "list": isinstance(v, list),
              "str?": v is None or isinstance(v, str), "hex": is_hex_hash(v)}[kind]
        if not ok:
            fail(f"{where}: member {name!r} has the wrong type or form")
    for name in record:
        if name not in RECORD_MEMBERS:
            fail(f"{where}: unexpected member {name!r} (not in format {KNOWN_FORMAT})")
    content = {k: v for k, v in record.items() if k != "hash"}
    try:
        computed = leaf_hash(canonical_bytes(content))
    except Unsupported as e:
        cannot_check(f"{where}: {e}")
    if computed.hex() != record["hash"]:
        fail(f"{where}: hash does not match its content")
    return rev, bytes.fromhex(record["prev_hash"]), computed


# ---------------------------------------------------------------------------------------
# Verifier keys and signed checkpoints (section 5: C2SP signed-note + tlog-checkpoint)
# ---------------------------------------------------------------------------------------

def read_bytes(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        cannot_check(f"cannot read {path}: {e.strerror}")


class VerifierKey:
    def __init__(self, path):
        """Parse `<name>+<8 hex key id>+<base64(0x01 || public key)>` (exit 2 if bad)."""
        try:
            text = read_bytes(path).decode("utf-8").strip()
            name, key_id_hex, key_b64 = text.split("+")
            key_id = bytes.fromhex(key_id_hex)
            blob = strict_b64(key_b64)
        except ValueError:
            cannot_check(f"key {path}: not a verifier key line <name>+<key id>+<key>")
        if not name or any(c.isspace() for c in name):
            cannot_check(f"key {path}: the key name is empty or holds whitespace")
        if len(key_id) != 4 or len(blob) != 33 or blob[0] != 0x01:
            cannot_check(f"key {path}: not an Ed25519 verifier key")
        # Key id = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
        if sha256(name.encode("utf-8") + b"\n" + blob)[:4] != key_id:
            cannot_check(f"key {path}: the key id does not match the name and key")
        self.name, self.key_id = name, key_id
        self.public = Ed25519PublicKey.from_public_bytes(blob[1:])


class Checkpoint:
    def __init__(self, path, key):
        """Verify the signed note at `path` with `key`, then read origin, size and root."""
        where = self.where = f"checkpoint {path}"
        try:
            text = read_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            fail(f"{where}: not valid UTF-8")
        # Note text and signatures are split at the LAST blank line; the note text keeps
        # its final newline, which the signature covers.
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            fail(f"{where}: not a signed note (note text, blank line, signature lines)")
        note, sig_lines = text[:split + 1], text[split + 2:-1].split("\n")
        signed_by_key = 0
        for n, line in enumerate(sig_lines, 1):
            name, _, sig_b64 = line[2:].rpartition(" ")
            try:
                blob = strict_b64(sig_b64)
            except ValueError:
                blob = b""
            if not line.startswith("\u2014 ") or not name or len(blob) < 5:
                fail(f"{where}: signature line {n} is malformed")
            if name != key.name or blob[:4] != key.key_id:
                continue                       # another key, e.g. a witness cosignature
            signed_by_key += 1
            try:
                if len(blob) != 68:
                    raise InvalidSignature()
                key.public.verify(blob[4:], note.encode("utf-8"))
            except InvalidSignature:
                fail(f"{where}: the signature of {key.name} does not verify")
        if not signed_by_key:
            fail(f"{where}: no valid signature by {key.name}")
        # The signed text: origin, tree size, base64 root; extension lines are ignored.
        lines = note[:-1].split("\n")
        if len(lines) < 3:
            fail(f"{where}: note text must have origin, tree size and root lines")
        origin, size, root = lines[:3]
        if origin != key.name:
            fail(f"{where}: origin {origin!r} is not the key name {key.name!r}")
        if not (size.isascii() and size.isdigit()) or (size != "0" and size[0] == "0"):
            fail(f"{where}: tree size {size!r} is not a decimal number")
        try:
            self.root = strict_b64(root)
        except ValueError:
            self.root = b""
        if len(self.root) != 32:
            fail(f"{where}: root {root!r} is not a base64 SHA-256 hash")
        self.size = int(size)


def load_json_file(path, what):
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{what} {path}: not valid UTF-8")
    value = parse_json(text, f"{what} {path}")
    if not isinstance(value, dict):
        fail(f"{what} {path}: not a JSON object")
    return value


def need_members(obj, names, where):
    if set(obj) != set(names):
        fail(f"{where}: expected exactly the members {', '.join(names)}")


def need_count(obj, name, where):
    if not is_count(obj[name]):
        fail(f"{where}: {name} is not a non-negative integer")
    return obj[name]


# ---------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------

def cmd_chain(args):
    if (args.checkpoint or args.continues) and not args.key:
        cannot_check("--checkpoint and --continues need --key KEY.vkey")
    key = VerifierKey(args.key) if args.key else None
    head = Checkpoint(args.checkpoint, key) if args.checkpoint else None
    old = Checkpoint(args.continues, key) if args.continues else None

    lines = read_bytes(args.export).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()                            # the newline that ends the last line
    texts = []
    for n, raw in enumerate(lines, 1):
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            fail(f"line {n}: not valid UTF-8")
    is_header = bool(texts) and texts[0].startswith('{"continues"')

    tree, prev_rev, prev_hash, first_line = CompactRange(), 0, bytes(32), 1
    if old:
        # Section 7: the header, checked against the old checkpoint without old records.
        if not is_header:
            cannot_check("line 1: --continues given, but the export has no continuation header")
        header = parse_json(texts[0], "line 1")
        need_members(header, ["continues"], "line 1")
        cont = header["continues"]
        if not isinstance(cont, dict):
            fail("line 1: continues is not an object")
        need_members(cont, ["tree_size", "last_hash", "audit_path"], "line 1: continues")
        m = need_count(cont, "tree_size", "line 1: continues")
        last = hex_hash(cont["last_hash"], "line 1: last_hash")
        path = hex_path(cont["audit_path"], "line 1: audit_path")
        if m != old.size:
            fail(f"line 1: the export continues after revision {m} but {old.where} "
                 f"covers {old.size} revisions")
        if not verify_inclusion(last, m - 1, m, path, old.root):   # m == 0 fails here
            fail(f"line 1: last_hash is not proven to be revision {m} of {old.where} "
                 f"(the inclusion proof does not verify)")
        tree = CompactRange.from_right_edge(m, last, path)
        assert tree.root() == old.root        # implied by the inclusion proof
        prev_rev, prev_hash, first_line = m, last, 2
    elif is_header:
        cannot_check("line 1: this is a continuation export; give --continues OLD.txt --key KEY.vkey")
    if head and head.size < tree.size:
        cannot_check(f"{head.where} covers {head.size} revisions, fewer than the "
                     f"{tree.size} before this export; check it with `consistency`")

    matched = []

    def compare_head():
        if head and tree.size == head.size:
            if tree.root() != head.root:
                fail(f"the root of the first {head.size} revisions does not match "
                     f"the root of {head.where}")
            matched.append(head)

    compare_head()
    first_rev = prev_rev + 1
    for n, text in enumerate(texts[first_line - 1:], first_line):
        if not text.strip():
            fail(f"line {n}: empty line")
        rev, record_prev, h = check_record(parse_json(text, f"line {n}"), f"line {n}")
        if rev != prev_rev + 1:
            fail(f"line {n}: revision {rev} follows revision {prev_rev}: "
                 f"records are missing or out of order")
        if record_prev != prev_hash:
            of = f"revision {prev_rev}" if prev_rev else "zeros (revision 1)"
            fail(f"line {n}: revision {rev}: prev_hash does not match the hash of {of}")
        tree.append(h)
        prev_rev, prev_hash = rev, h
        compare_head()
    if head and tree.size < head.size:
        fail(f"the export ends at revision {tree.size} but {head.where} "
             f"covers {head.size} revisions")

    checked = prev_rev - first_rev + 1
    print(f"verified: {checked} revisions checked"
          + (f" ({first_rev}..{prev_rev})" if checked else ""))
    if old:
        print(f"continues: {old.where} (size {old.size}) matches the continuation header")
    print(f"head hash: {prev_hash.hex() if prev_rev else '(none)'}")
    print(f"tree root: {tree.root().hex()} (size {tree.size})")
    for cp in matched:
        print(f"matched: {cp.where} (size {cp.size}, signed by {key.name})")


def cmd_inclusion(args):
    key = VerifierKey(args.key)
    head = Checkpoint(args.checkpoint, key)
    where = f"record {args.record}"
    rev, _, h = check_record(load_json_file(args.record, "record"), where)
    proof = load_json_file(args.proof, "proof")
    pw = f"proof {args.proof}"
    need_members(proof, ["revision", "leaf_index", "tree_size", "leaf_hash", "root_hash",
                         "audit_path"], pw)
    if need_count(proof, "revision", pw) != rev:
        fail(f"{pw}: is for revision {proof['revision']}, the record is revision {rev}")
    if need_count(proof, "leaf_index", pw) != rev - 1:
        fail(f"{pw}: leaf_index {proof['leaf_index']} is not revision {rev} - 1")
    if hex_hash(proof["leaf_hash"], f"{pw}: leaf_hash") != h:
        fail(f"{pw}: leaf_hash is not the hash of revision {rev}")
    if need_count(proof, "tree_size", pw) != head.size:
        fail(f"{pw}: tree_size {proof['tree_size']} is not the size of {head.where} "
             f"({head.size})")
    if hex_hash(proof["root_hash"], f"{pw}: root_hash") != head.root:
        fail(f"{pw}: root_hash is not the root of {head.where}")
    path = hex_path(proof["audit_path"], f"{pw}: audit_path")
    if not verify_inclusion(h, rev - 1, head.size, path, head.root):
        fail(f"{pw}: the audit path does not lead from revision {rev} to the root of "
             f"{head.where}")
    print(f"verified: revision {rev} (hash {h.hex()}) is in the tree of size {head.size}")
    print(f"tree root: {head.root.hex()}, {head.where} signed by {key.name}")


def cmd_consistency(args):
    key = VerifierKey(args.key)
    old, new = Checkpoint(args.old, key), Checkpoint(args.new, key)
    proof = load_json_file(args.proof, "proof")
    pw = f"proof {args.proof}"
    need_members(proof, ["first", "second", "first_root", "second_root", "proof"], pw)
    if need_count(proof, "first", pw) != old.size:
        fail(f"{pw}: first {proof['first']} is not the size of {old.where} ({old.size})")
    if need_count(proof, "second", pw) != new.size:
        fail(f"{pw}: second {proof['second']} is not the size of {new.where} ({new.size})")
    if hex_hash(proof["first_root"], f"{pw}: first_root") != old.root:
        fail(f"{pw}: first_root is not the root of {old.where}")
    if hex_hash(proof["second_root"], f"{pw}: second_root") != new.root:
        fail(f"{pw}: second_root is not the root of {new.where}")
    hashes = hex_path(proof["proof"], f"{pw}: proof")
    if old.size == 0:
        fail(f"{old.where}: a consistency proof needs a first tree of at least 1 revision")
    if old.size > new.size:
        fail(f"{old.where} covers {old.size} revisions, more than {new.where} ({new.size})")
    if not verify_consistency(old.size, new.size, old.root, new.root, hashes):
        fail(f"{pw}: does not prove that the tree of size {old.size} is a prefix of the "
             f"tree of size {new.size}")
    print(f"verified: the tree of size {old.size} ({old.root.hex()}) is a prefix of the "
          f"tree of size {new.size} ({new.root.hex()}); both signed by {key.name}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Verify a Roster history export, inclusion proof or consistency proof "
                    "(format 2, see docs/history-format.md).",
        epilog="exit status: 0 verified, 1 verification failed, 2 usage or unreadable input")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("chain", help="check an export (JSON lines) record by record")
    p.add_argument("export", metavar="EXPORT", help="export file, or - for stdin")
    p.add_argument("--checkpoint", metavar="HEAD.txt", help="compare the root with this checkpoint")
    p.add_argument("--continues", metavar="OLD.txt",
                   help="the export is a continuation of the tree of this checkpoint")
    p.add_argument("--key", metavar="KEY.vkey", help="the history verifier key")
    p.set_defaults(run=cmd_chain)
    p = sub.add_parser("inclusion", help="check that one record is in a signed tree")
    for opt, mv in (("--checkpoint", "HEAD.txt"), ("--key", "KEY.vkey"),
                    ("--record", "REC.json"), ("--proof", "PROOF.json")):
        p.add_argument(opt, metavar=mv, required=True)
    p.set_defaults(run=cmd_inclusion)
    p = sub.add_parser("consistency", help="check that an older signed tree is a prefix of a newer one")
    for opt, mv in (("--old", "OLD.txt"), ("--new", "NEW.txt"), ("--key", "KEY.vkey"),
                    ("--proof", "PROOF.json")):
        p.add_argument(opt, metavar=mv, required=True)
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
