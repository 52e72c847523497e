//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for the values history records
//! hold: objects, arrays, strings, integers, booleans and null. The bytes a record's hash
//! covers are written here, and `docs/history-format.md` says exactly what they are, so a
//! verifier in any language can rebuild them.
//!
//! Written by hand rather than through `serde_json::to_vec`: that depends on crate features
//! (`preserve_order` changes member order) and on escaping choices no document promises.
//! [`to_vec_of`] writes any `Serialize` value straight to canonical bytes (no intermediate
//! `serde_json::Value`: a record is hashed on every apply); [`to_vec`] does the same for a
//! `Value`, and a test holds the two to the same bytes.

use serde::ser::{self, Serialize};
use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("{0} is not an integer: history records hold integers only")]
    NotAnInteger(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalError::Unsupported(msg.to_string())
    }
}

/// The canonical bytes of any serializable value (as `serde_json` would map it to JSON).
pub fn to_vec_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(512);
    value.serialize(&mut Canonical { out: &mut out, scratch: Vec::new() })?;
    Ok(out)
}

struct Canonical<'a> {
    out: &'a mut Vec<u8>,
    /// Where an object's member values wait while they are sorted (reused: an inner object
    /// is finished before its outer one goes on).
    scratch: Vec<u8>,
}

/// An object being written: each member's value is written at the end of the output as it
/// comes, then `end` cuts them off and writes them back sorted by name.
struct Members<'a, 'b> {
    ser: &'b mut Canonical<'a>,
    start: usize,
    /// Name, and the value's byte range in the output.
    members: Vec<(std::borrow::Cow<'static, str>, usize, usize)>,
    pending_key: Option<String>,
    /// For a struct variant: `{"variant":` is written before the members and `}` after.
    close_variant: bool,
}

impl<'a, 'b> Members<'a, 'b> {
    fn new(ser: &'b mut Canonical<'a>, close_variant: bool) -> Self {
        let start = ser.out.len();
        Self { ser, start, members: Vec::new(), pending_key: None, close_variant }
    }

    fn value<T: Serialize + ?Sized>(&mut self, name: std::borrow::Cow<'static, str>, value: &T) -> Result<(), CanonicalError> {
        let from = self.ser.out.len();
        value.serialize(&mut *self.ser)?;
        self.members.push((name, from, self.ser.out.len()));
        Ok(())
    }

    fn finish(mut self) -> Result<(), CanonicalError> {
        let mut values = std::mem::take(&mut self.ser.scratch);
        values.clear();
        values.extend_from_slice(&self.ser.out[self.start..]);
        self.ser.out.truncate(self.start);
        self.members.sort_by(|a, b| member_order(&a.0, &b.0));
        let out = &mut *self.ser.out;
        out.push(b'{');
        for (i, (name, from, to)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(name, out);
            out.push(b':');
            out.extend_from_slice(&values[from - self.start..to - self.start]);
        }
        out.push(b'}');
        if self.close_variant {
            out.push(b'}');
        }
        self.ser.scratch = values;
        Ok(())
    }
}

/// Captures a map key, which must be a string.
struct KeyName;

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = CanonicalError;
    type SerializeSeq = ser::Impossible<String, CanonicalError>;
    type SerializeTuple = ser::Impossible<String, CanonicalError>;
    type SerializeTupleStruct = ser::Impossible<String, CanonicalError>;
    type SerializeTupleVariant = ser::Impossible<String, CanonicalError>;
    type SerializeMap = ser::Impossible<String, CanonicalError>;
    type SerializeStruct = ser::Impossible<String, CanonicalError>;
    type SerializeStructVariant = ser::Impossible<String, CanonicalError>;

    fn serialize_str(self, v: &str) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<String, CanonicalError> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<String, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_i64(self, v: i64) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<String, CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<String, CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<String, CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<String, CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<String, CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, _: f32) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_f64(self, _: f64) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_char(self, v: char) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<String, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, CanonicalError> {
        Err(not_a_key())
    }
}

fn not_a_key() -> CanonicalError {
    CanonicalError::Unsupported("JSON object member names must be strings".into())
}

impl<'a, 'b> ser::Serializer for &'b mut Canonical<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Elements<'a, 'b>;
    type SerializeTuple = Elements<'a, 'b>;
    type SerializeTupleStruct = Elements<'a, 'b>;
    type SerializeTupleVariant = Elements<'a, 'b>;
    type SerializeMap = Members<'a, 'b>;
    type SerializeStruct = Members<'a, 'b>;
    type SerializeStructVariant = Members<'a, 'b>;

    fn is_human_readable(&self) -> bool {
        true
    }
    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        Err(CanonicalError::NotAnInteger(v.to_string()))
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        Err(CanonicalError::NotAnInteger(v.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_string(v.encode_utf8(&mut [0u8; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, variant: &'static str, value: &T) -> Result<(), CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'a, 'b>, CanonicalError> {
        self.out.push(b'[');
        Ok(Elements { ser: self, first: true, close_variant: false })
    }
    fn serialize_tuple(self, len: usize) -> Result<Elements<'a, 'b>, CanonicalError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Elements<'a, 'b>, CanonicalError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, variant: &'static str, _: usize) -> Result<Elements<'a, 'b>, CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.extend_from_slice(b":[");
        Ok(Elements { ser: self, first: true, close_variant: true })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Members<'a, 'b>, CanonicalError> {
        Ok(Members::new(self, false))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Members<'a, 'b>, CanonicalError> {
        Ok(Members::new(self, false))
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, variant: &'static str, _: usize) -> Result<Members<'a, 'b>, CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        Ok(Members::new(self, true))
    }
}

/// An array being written.
struct Elements<'a, 'b> {
    ser: &'b mut Canonical<'a>,
    first: bool,
    close_variant: bool,
}

impl Elements<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !std::mem::replace(&mut self.first, false) {
            self.ser.out.push(b',');
        }
        value.serialize(&mut *self.ser)
    }
    fn close(self) -> Result<(), CanonicalError> {
        self.ser.out.push(b']');
        if self.close_variant {
            self.ser.out.push(b'}');
        }
        Ok(())
    }
}

/// Every sequence-like serde form writes its items as array elements.
macro_rules! elements_impl {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for Elements<'_, '_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
                self.element(value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.close()
            }
        }
    };
}

elements_impl!(SerializeSeq, serialize_element);
elements_impl!(SerializeTuple, serialize_element);
elements_impl!(SerializeTupleStruct, serialize_field);
elements_impl!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for Members<'_, '_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        self.pending_key = Some(key.serialize(KeyName)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        let name = self.pending_key.take().ok_or_else(|| CanonicalError::Unsupported("a map value without a key".into()))?;
        self.value(name.into(), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Members<'_, '_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), CanonicalError> {
        self.value(key.into(), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Members<'_, '_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), CanonicalError> {
        self.value(key.into(), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

/// The canonical bytes of a JSON value (the same writer as [`to_vec_of`]).
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    to_vec_of(value)
}

/// Bytes a JSON string must escape: `"`, `\` and the control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A string as RFC 8785 writes it: only `"`, `\` and U+0000..U+001F are escaped. Runs of
/// bytes that need no escape are copied at once (multi-byte UTF-8 never needs one).
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = s.as_bytes();
    out.push(b'"');
    while let Some(i) = rest.iter().position(|&b| NEEDS_ESCAPE[b as usize]) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]),
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// RFC 8785 member order: by UTF-16 code units. That is byte (code point) order except where
/// the first difference sets a character of U+E000..U+FFFF (UTF-8 lead byte 0xEE or 0xEF)
/// against one above U+FFFF (lead byte 0xF0 and up), which UTF-16 writes as surrogates
/// (0xD800..0xDFFF) and so sorts first. A first difference in a continuation byte lies
/// between two characters of the same length, where both orders agree.
fn member_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    match x.iter().zip(y).position(|(p, q)| p != q) {
        None => x.len().cmp(&y.len()),
        Some(i) => match (x[i], y[i]) {
            (0xEE..=0xEF, 0xF0..) => std::cmp::Ordering::Greater,
            (0xF0.., 0xEE..=0xEF) => std::cmp::Ordering::Less,
            (p, q) => p.cmp(&q),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn members_sort_and_nothing_is_spaced() {
        assert_eq!(canon(json!({"b": [1, true, null], "a": {"d": "x", "c": 0}})), r#"{"a":{"c":0,"d":"x"},"b":[1,true,null]}"#);
    }

    #[test]
    fn strings_escape_only_what_rfc_8785_escapes() {
        let s = "q\"b\\/\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}é€😀\u{2028}";
        assert_eq!(canon(json!(s)), "\"q\\\"b\\\\/\\u0001\\b\\t\\n\\f\\r\\u001f\u{7f}é€😀\u{2028}\"");
    }

    /// RFC 8785 section 3.2.3: names compare as UTF-16 code units, so U+1F600 (a surrogate
    /// pair starting 0xD83D) sorts before U+FB33 although its code point is larger.
    #[test]
    fn member_names_compare_as_utf16() {
        assert_eq!(canon(json!({"\u{fb33}": 1, "😀": 2, "a": 3})), "{\"a\":3,\"😀\":2,\"\u{fb33}\":1}");
        let names = ["", "a", "ab", "b", "é", "\u{7ff}", "\u{800}", "\u{d7ff}", "\u{e000}", "\u{fb33}", "\u{ffff}", "😀", "\u{10000}", "a😀", "a\u{e000}", "\u{10ffff}"];
        for a in names {
            for b in names {
                assert_eq!(member_order(a, b), a.encode_utf16().cmp(b.encode_utf16()), "{a:?} vs {b:?}");
            }
        }
    }

    /// The direct writer and the `Value` writer give the same bytes, on values shaped like
    /// records: nested structs, enums of each kind, options, maps, escapes.
    #[test]
    fn the_direct_writer_matches_the_value_writer() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        enum E {
            Unit,
            New(u8),
            Tuple(u8, String),
            Named { zeta: bool, alpha: Option<String>, mid: Vec<u16> },
        }
        #[derive(serde::Serialize)]
        struct R {
            z: u64,
            a: String,
            events: Vec<E>,
            map: std::collections::BTreeMap<String, i32>,
            none: Option<u8>,
        }
        let r = R {
            z: u64::MAX,
            a: "q\"\\\u{1}\n é😀".into(),
            events: vec![E::Unit, E::New(7), E::Tuple(1, "t".into()), E::Named { zeta: true, alpha: None, mid: vec![3, 2] }],
            map: [("b".to_string(), -1), ("a".to_string(), 2), ("\u{fb33}".to_string(), 3), ("😀".to_string(), 4)].into(),
            none: None,
        };
        let direct = to_vec_of(&r).unwrap();
        assert_eq!(String::from_utf8(direct.clone()).unwrap(), canon(serde_json::to_value(&r).unwrap()));
        assert!(matches!(to_vec_of(&1.5f64), Err(CanonicalError::NotAnInteger(_))));
    }

    #[test]
    fn integers_are_plain_and_fractions_are_refused() {
        assert_eq!(canon(json!([0, 18446744073709551615u64, -5])), "[0,18446744073709551615,-5]");
        assert!(matches!(to_vec(&json!(1.5)), Err(CanonicalError::NotAnInteger(_))));
    }
}
