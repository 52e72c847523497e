//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) for the values history records
//! hold: objects, arrays, strings, integers, booleans and null. The bytes a record's hash
//! covers are written here, and `docs/history-format.md` says exactly what they are, so a
//! verifier in any language can rebuild them.
//!
//! Written by hand rather than through `serde_json::to_vec`: that depends on crate features
//! (`preserve_order` changes member order) and on escaping choices no document promises.

use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("{0} is not an integer: history records hold integers only")]
    NotAnInteger(String),
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => out.extend_from_slice(u.to_string().as_bytes()),
            (None, Some(i)) => out.extend_from_slice(i.to_string().as_bytes()),
            _ => return Err(CanonicalError::NotAnInteger(n.to_string())),
        },
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            // Member names sort by their UTF-16 code units (RFC 8785 section 3.2.3).
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write(member, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A string as RFC 8785 writes it: only `"`, `\` and U+0000..U+001F are escaped.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]),
            // Multi-byte UTF-8 sequences pass through unchanged.
            _ => out.push(b),
        }
    }
    out.push(b'"');
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
    }

    #[test]
    fn integers_are_plain_and_fractions_are_refused() {
        assert_eq!(canon(json!([0, 18446744073709551615u64, -5])), "[0,18446744073709551615,-5]");
        assert!(matches!(to_vec(&json!(1.5)), Err(CanonicalError::NotAnInteger(_))));
    }
}
