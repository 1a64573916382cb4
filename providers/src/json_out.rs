//! Compact JSON for stored bodies, byte for byte what `serde_json::to_vec` writes, faster.
//!
//! The embedded provider encodes every saved body; with 1 KB bodies, serde_json's string
//! escaping (a table lookup per byte) was most of that cost. Here strings are scanned eight
//! bytes at a time for the bytes JSON must escape (`"`, `\` and controls below 0x20) and
//! copied in runs. Output equals serde_json's with this workspace's features
//! (`arbitrary_precision`: a number is written as its text), which the tests check.

use std::cell::RefCell;

use serde_json::{Map, Value};

/// `body` as compact JSON, equal to `serde_json::to_vec(body)`. Encoded into a reused
/// per-thread buffer and copied out at its exact size: one allocation, no regrowth.
pub(crate) fn body_to_vec(body: &Map<String, Value>) -> Vec<u8> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut out) => {
            out.clear();
            write_object(&mut out, body);
            let json = out.to_vec();
            // A huge body's buffer is not kept for the thread's lifetime.
            if out.capacity() > SCRATCH_KEPT {
                *out = Vec::new();
            }
            json
        }
        // Only reentrancy could get here; encode without the scratch buffer.
        Err(_) => {
            let mut out = Vec::new();
            write_object(&mut out, body);
            out
        }
    })
}

/// The largest scratch buffer a thread keeps between calls.
const SCRATCH_KEPT: usize = 1 << 20;

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // With `arbitrary_precision` a number is its JSON text, which serde_json writes as is.
        Value::Number(n) => out.extend_from_slice(n.as_str().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `word` needs escaping: is below 0x20, or is `"` or `\`. Exact as a
/// yes/no (the classic "has a byte less than n" and "has a zero byte" tests).
fn needs_escape(word: u64) -> bool {
    let below_space = word.wrapping_sub(LOW_BITS * 0x20) & !word;
    let quote = word ^ (LOW_BITS * u64::from(b'"'));
    let backslash = word ^ (LOW_BITS * u64::from(b'\\'));
    let has_quote = quote.wrapping_sub(LOW_BITS) & !quote;
    let has_backslash = backslash.wrapping_sub(LOW_BITS) & !backslash;
    (below_space | has_quote | has_backslash) & HIGH_BITS != 0
}

/// `text` as a JSON string with serde_json's escapes: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
/// `\t`, and `\u00XX` (lowercase hex) for the other controls; everything else, UTF-8
/// included, as is.
fn write_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[start..at]` is the run not yet copied; everything before it is written.
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(chunk) = bytes.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_le_bytes(word)) {
                at += 8;
                continue;
            }
        }
        // A word with a byte to escape, or the tail: byte by byte to the word's end.
        let end = (at + 8).min(bytes.len());
        while at < end {
            let byte = bytes[at];
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                0x0C => b"\\f",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x00..=0x1F => {
                    out.extend_from_slice(&bytes[start..at]);
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0xF)]);
                    at += 1;
                    start = at;
                    continue;
                }
                _ => {
                    at += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[start..at]);
            out.extend_from_slice(escape);
            at += 1;
            start = at;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same_as_serde(value: &Value) {
        let Value::Object(map) = json!({ "v": value }) else {
            unreachable!("an object literal")
        };
        let ours = body_to_vec(&map);
        let theirs = serde_json::to_vec(&map).expect("serde_json encodes any Value");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "for {value:?}"
        );
    }

    #[test]
    fn every_byte_escapes_as_serde_json_escapes_it() {
        for byte in 0u8..=0x7F {
            let c = char::from(byte);
            // At each position of a word and across word boundaries.
            for prefix in 0..17 {
                let text = format!("{}{c}{}", "a".repeat(prefix), "b".repeat(9));
                same_as_serde(&Value::String(text));
            }
        }
    }

    #[test]
    fn strings_of_every_kind() {
        for text in [
            "",
            "plain",
            "exactly8",
            "sixteen bytes!!!",
            "é ü 日本語 😀 and \u{7f}\u{80}\u{ffff}",
            "\"\\\"\\",
            "\u{0}\u{1}\u{1f} \n\r\t\u{8}\u{c}",
            "mixed \"quotes\" and é\nnew\tlines\\ in a longer string that spans words",
            &"lorem ipsum dolor sit amet ".repeat(30),
            &"\"".repeat(20),
        ] {
            same_as_serde(&Value::String(text.to_owned()));
        }
    }

    #[test]
    fn values_of_every_kind() {
        same_as_serde(&json!(null));
        same_as_serde(&json!({
            "null": null, "t": true, "f": false,
            "ints": [0, -1, 9007199254740993_u64, i64::MIN, u64::MAX],
            "floats": [0.25, -1.5e300, 1e-7, 3.0],
            "nested": {"a": [[], {}, [{"b\n": "c\""}]], "": ""},
            "ünï\u{1}cødé key": "v",
        }));
        // Numbers as the app wrote them (arbitrary precision keeps their text).
        let parsed: Value =
            serde_json::from_str(r#"{"n": [1.0, 1E5, -0, 12345678901234567890123, 0.1e-2]}"#)
                .expect("valid JSON");
        same_as_serde(&parsed);
    }

    /// A random value: strings of characters from every class (controls, quotes,
    /// backslashes, ASCII, multi-byte), numbers, nesting.
    fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
        let pick = if depth == 0 {
            rng.u32(..4)
        } else {
            rng.u32(..6)
        };
        match pick {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => json!(rng.i64(..)),
            3 => Value::String(random_string(rng)),
            4 => Value::Array(
                (0..rng.usize(..5))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.usize(..5))
                    .map(|_| (random_string(rng), random_value(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    fn random_string(rng: &mut fastrand::Rng) -> String {
        const CLASSES: [&[char]; 4] = [
            &['\u{0}', '\u{8}', '\n', '\u{1f}', '"', '\\'],
            &['a', 'Z', ' ', '/', '\u{7f}'],
            &['é', '日', '😀', '\u{ffff}'],
            &['x'],
        ];
        (0..rng.usize(..40))
            .map(|_| {
                let class = CLASSES[rng.usize(..CLASSES.len())];
                class[rng.usize(..class.len())]
            })
            .collect()
    }

    #[test]
    fn random_values_encode_as_serde_json_does() {
        let mut rng = fastrand::Rng::with_seed(982);
        for _ in 0..3_000 {
            same_as_serde(&random_value(&mut rng, 3));
        }
    }

    #[test]
    fn the_word_test_is_exact() {
        // Every byte value in every position of a word: escape needed iff some byte is.
        for pos in 0..8 {
            for byte in 0u8..=255 {
                let mut word = [b'a'; 8];
                word[pos] = byte;
                let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    expected,
                    "byte {byte:#x} at {pos}"
                );
            }
        }
        // And words of many bytes, where a borrow between bytes could mislead the test.
        let mut rng = fastrand::Rng::with_seed(18);
        for _ in 0..200_000 {
            let word = rng.u64(..);
            let expected = word
                .to_le_bytes()
                .iter()
                .any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(needs_escape(word), expected, "word {word:#018x}");
        }
    }
}
