//! Byte-level compatibility with Go's `encoding/json` and `time` (ollama-wire.md §1, §5).
//!
//! - [`to_vec`]: serializes like `json.Marshal`: `<`, `>`, `&`, U+2028 and U+2029 escaped as
//!   `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`; struct field order preserved.
//! - [`timestamp`]: RFC 3339 with trailing fractional zeros trimmed, like Go's `time.Time`.
//! - [`parse_keep_alive`]: `api.Duration` decoding (number = seconds, Go duration strings).
//! - [`decode_error`]: Go decoder wording for malformed bodies.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

/// A formatter that escapes HTML-sensitive characters as Go does.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let escaped = match ch {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        CompactFormatter.write_f32(writer, value)
    }
}

/// Serializes `value` as Go's `json.Marshal` would (no trailing newline).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing our own plain data types cannot fail.
    let _ = value.serialize(&mut ser);
    out
}

/// One NDJSON line: `json.Marshal(v) + "\n"`.
pub fn line<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = to_vec(value);
    out.push(b'\n');
    out
}

/// RFC 3339 in UTC with nanoseconds, trailing zeros trimmed (`2024-09-12T21:17:29.110811Z`).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let base =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        base.year(),
        u8::from(base.month()),
        base.day(),
        base.hour(),
        base.minute(),
        base.second()
    );
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// How long a model stays loaded after its last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    For(Duration),
    Forever,
}

impl KeepAlive {
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }
}

/// Decodes a `keep_alive` JSON value like `api.Duration.UnmarshalJSON`.
/// `Ok(None)` when absent or null.
pub fn parse_keep_alive(value: Option<&serde_json::Value>) -> Result<Option<KeepAlive>, String> {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n.as_f64().unwrap_or(0.0);
            if secs < 0.0 {
                Ok(Some(KeepAlive::Forever))
            } else {
                Ok(Some(KeepAlive::For(Duration::from_secs_f64(secs))))
            }
        }
        Some(Value::String(s)) => parse_go_duration(s).map(|(negative, d)| {
            Some(if negative {
                KeepAlive::Forever
            } else {
                KeepAlive::For(d)
            })
        }),
        Some(other) => Err(format!("Unsupported type: '{}'", json_kind(other))),
    }
}

/// Go's `time.ParseDuration`: returns (negative, magnitude).
pub fn parse_go_duration(s: &str) -> Result<(bool, Duration), String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..num_end].parse().map_err(|_| invalid())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{s}\""
                ));
            }
        };
        total += number * scale;
    }
    Ok((negative, Duration::from_secs_f64(total)))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Decodes the first JSON value of a body like gin's `ShouldBindJSON` (trailing bytes ignored),
/// with Go's error wording.
pub fn decode_body(body: &[u8]) -> Result<serde_json::Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(if body.is_empty() {
            "missing request body".into()
        } else {
            "EOF".into()
        });
    }
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(decode_error(body, &e)),
        None => Err("EOF".into()),
    }
}

/// Go decoder wording for a serde_json error at the same position.
pub fn decode_error(body: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected EOF".into();
    }
    let offset = line_col_to_offset(body, e.line(), e.column());
    match body.get(offset.saturating_sub(1)) {
        Some(&c) if offset > 0 => {
            let shown = if c.is_ascii_graphic() {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            };
            let context = if body[..offset.saturating_sub(1)]
                .iter()
                .all(u8::is_ascii_whitespace)
            {
                "looking for beginning of value"
            } else {
                "after top-level value or inside value"
            };
            format!("invalid character '{shown}' {context}")
        }
        _ => format!("invalid JSON: {e}"),
    }
}

fn line_col_to_offset(body: &[u8], line: usize, col: usize) -> usize {
    let mut current = 1;
    for (i, &b) in body.iter().enumerate() {
        if current == line {
            return i + col;
        }
        if b == b'\n' {
            current += 1;
        }
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_characters_are_escaped_like_go() {
        let v = serde_json::json!({"response": "<think>a & b</think>\u{2028}"});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"response":"\u003cthink\u003ea \u0026 b\u003c/think\u003e\u2028"}"#
        );
    }

    #[test]
    fn timestamps_trim_trailing_zeros() {
        let t = UNIX_EPOCH + Duration::new(1_726_175_849, 110_811_000);
        assert_eq!(timestamp(t), "2024-09-12T21:17:29.110811Z");
        let t = UNIX_EPOCH + Duration::new(1_726_175_849, 0);
        assert_eq!(timestamp(t), "2024-09-12T21:17:29Z");
    }

    #[test]
    fn keep_alive_follows_api_duration() {
        use serde_json::json;
        let p = |v: serde_json::Value| parse_keep_alive(Some(&v));
        assert_eq!(
            p(json!(42.5)).unwrap(),
            Some(KeepAlive::For(Duration::from_secs_f64(42.5)))
        );
        assert_eq!(p(json!(-1)).unwrap(), Some(KeepAlive::Forever));
        assert_eq!(
            p(json!("10m")).unwrap(),
            Some(KeepAlive::For(Duration::from_secs(600)))
        );
        assert_eq!(
            p(json!("1h30m")).unwrap(),
            Some(KeepAlive::For(Duration::from_secs(5400)))
        );
        assert_eq!(
            p(json!("300ms")).unwrap(),
            Some(KeepAlive::For(Duration::from_millis(300)))
        );
        assert_eq!(p(json!("0")).unwrap(), Some(KeepAlive::For(Duration::ZERO)));
        assert_eq!(p(json!("-1m")).unwrap(), Some(KeepAlive::Forever));
        assert_eq!(
            p(json!("-1")).unwrap_err(),
            "time: missing unit in duration \"-1\""
        );
        assert_eq!(
            p(json!("300")).unwrap_err(),
            "time: missing unit in duration \"300\""
        );
        assert!(p(json!(true)).unwrap_err().starts_with("Unsupported type"));
        assert_eq!(parse_keep_alive(None).unwrap(), None);
    }

    #[test]
    fn decode_errors_use_go_wording() {
        assert_eq!(decode_body(b"").unwrap_err(), "missing request body");
        assert_eq!(
            decode_body(b"xyz").unwrap_err(),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(decode_body(b"{\"model\":").unwrap_err(), "unexpected EOF");
        assert_eq!(decode_body(b"{\"a\":1} trailing").unwrap()["a"], 1);
    }
}
