//! The masking itself, as pure functions over `serde_json::Value`: a leaf
//! under a masked pointer becomes `"••••:<fingerprint>"`, everything else
//! keeps its place and shape; a payload that is not JSON is masked whole;
//! an error text loses the masked values it quotes.
//!
//! The fingerprint is the first 4 bytes (8 hex digits) of
//! HMAC-SHA256(`masking.fingerprint_key`, the value's canonical JSON): a
//! string `a@b.c` is fingerprinted as the 7 bytes `"a@b.c"`, the number
//! `42` as `42`, `true` as `true`. Equal values, equal fingerprints (so two
//! masked values can still be matched); without the key, no dictionary of
//! likely values can be built against them. `null` stays `null` (it says
//! nothing), and a masked number or boolean becomes that string too: the
//! shape of objects and arrays is kept, a masked leaf's type is not.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;

use crate::config::pointer::Pointer;

/// What every mask starts with.
pub const MASK_PREFIX: &str = "••••:";

/// The keyed fingerprint of masked values. Its `Debug` shows no key.
#[derive(Clone)]
pub struct Fingerprint {
    key: SecretString,
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint([REDACTED])")
    }
}

impl Fingerprint {
    pub fn new(key: SecretString) -> Fingerprint {
        Fingerprint { key }
    }

    /// `••••:` and 8 hex digits of HMAC-SHA256(key, `bytes`).
    pub fn of_bytes(&self, bytes: &[u8]) -> String {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(MASK_PREFIX.len() + 8);
        out.push_str(MASK_PREFIX);
        for b in &digest[..4] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The mask of one leaf (a string, number or boolean), from its
    /// canonical JSON.
    pub fn of_leaf(&self, leaf: &Value) -> String {
        self.of_bytes(canonical(leaf).as_bytes())
    }
}

/// A value's canonical JSON: serde_json's compact form (object keys
/// sorted, as its default map keeps them; only leaves are fingerprinted).
fn canonical(value: &Value) -> String {
    value.to_string()
}

/// A copy of `value` with every leaf under each of `pointers` masked. A
/// pointer that leads nowhere masks nothing.
pub fn mask_value(value: &Value, pointers: &[Pointer], fp: &Fingerprint) -> Value {
    let mut out = value.clone();
    mask_in_place(&mut out, pointers, fp);
    out
}

/// [`mask_value`] on `value` itself.
pub fn mask_in_place(value: &mut Value, pointers: &[Pointer], fp: &Fingerprint) {
    for p in pointers {
        if let Some(target) = value.pointer_mut(&p.to_string()) {
            mask_leaves(target, fp);
        }
    }
}

fn mask_leaves(value: &mut Value, fp: &Fingerprint) {
    match value {
        Value::Null => {}
        Value::Object(map) => map.values_mut().for_each(|v| mask_leaves(v, fp)),
        Value::Array(items) => items.iter_mut().for_each(|v| mask_leaves(v, fp)),
        // Masked twice (a pointer under another): already a mask.
        Value::String(s) if s.starts_with(MASK_PREFIX) => {}
        leaf => *leaf = Value::String(fp.of_leaf(leaf)),
    }
}

/// The leaves under `pointers` that [`mask_value`] would mask, with their
/// masks: what an error text quoting them must lose ([`scrub`]).
pub fn masked_leaves(
    value: &Value,
    pointers: &[Pointer],
    fp: &Fingerprint,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in pointers {
        if let Some(target) = value.pointer(&p.to_string()) {
            collect(target, fp, &mut out);
        }
    }
    out
}

fn collect(value: &Value, fp: &Fingerprint, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Object(map) => map.values().for_each(|v| collect(v, fp, out)),
        Value::Array(items) => items.iter().for_each(|v| collect(v, fp, out)),
        Value::String(s) => out.push((s.clone(), fp.of_leaf(value))),
        leaf => out.push((leaf.to_string(), fp.of_leaf(leaf))),
    }
}

/// `text` with every occurrence of a masked value (one not glued to a
/// letter or digit on either side, so `42` goes from ``integer `42` `` but
/// not from `1428`) replaced by its mask. Longer values first, so a value
/// inside another is not replaced within it.
pub fn scrub(text: &str, leaves: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = leaves.iter().filter(|(v, _)| !v.is_empty()).collect();
    sorted.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for (value, mask) in sorted {
        out = replace_bounded(&out, value, mask);
    }
    out
}

fn replace_bounded(text: &str, needle: &str, with: &str) -> String {
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(needle) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + needle.len()..].chars().next();
        let edge_glues = |edge: Option<char>, own: Option<char>| {
            glued(edge) && own.is_some_and(|c| c.is_alphanumeric() || c == '_')
        };
        out.push_str(&rest[..at]);
        if edge_glues(before, needle.chars().next())
            || edge_glues(after, needle.chars().next_back())
        {
            out.push_str(needle);
        } else {
            out.push_str(with);
        }
        rest = &rest[at + needle.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint::new(SecretString::from("k".repeat(32)))
    }

    fn ptrs(list: &[&str]) -> Vec<Pointer> {
        list.iter()
            .map(|p| Pointer::parse(p).expect("valid"))
            .collect()
    }

    #[test]
    fn masks_leaves_and_keeps_the_shape() {
        let payload = json!({
            "eventId": "e1",
            "data": {"email": "a@b.c", "name": "Ann", "age": 41, "vip": true, "note": null},
            "card": {"number": "4242424242424242", "exp": ["12", 2030]},
        });
        let masked = mask_value(
            &payload,
            &ptrs(&[
                "/data/email",
                "/data/age",
                "/data/vip",
                "/card",
                "/data/note",
                "/nowhere",
            ]),
            &fp(),
        );
        assert_eq!(masked["eventId"], "e1");
        assert_eq!(masked["data"]["name"], "Ann");
        assert_eq!(masked["data"]["note"], Value::Null);
        for p in [
            "/data/email",
            "/data/age",
            "/data/vip",
            "/card/number",
            "/card/exp/0",
            "/card/exp/1",
        ] {
            let s = masked
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{p}: {masked}"));
            assert!(
                s.starts_with(MASK_PREFIX) && s.len() == MASK_PREFIX.len() + 8,
                "{p}: {s}"
            );
            assert!(s[MASK_PREFIX.len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit()));
        }
        assert!(masked["card"]["exp"].is_array() && masked["card"].is_object());
        assert!(!masked.to_string().contains("a@b.c"));
        assert!(!masked.to_string().contains("4242"));
    }

    #[test]
    fn equal_values_have_equal_fingerprints_and_the_key_matters() {
        let a = mask_value(
            &json!({"x": "a@b.c", "y": "a@b.c", "z": "c@d.e"}),
            &ptrs(&["/x", "/y", "/z"]),
            &fp(),
        );
        assert_eq!(a["x"], a["y"]);
        assert_ne!(a["x"], a["z"]);
        // A number and the string of its digits are different values.
        assert_ne!(fp().of_leaf(&json!(42)), fp().of_leaf(&json!("42")));
        let other = Fingerprint::new(SecretString::from("o".repeat(32)));
        assert_ne!(
            other.of_leaf(&json!("a@b.c")),
            fp().of_leaf(&json!("a@b.c"))
        );
        // Masking twice changes nothing more.
        assert_eq!(mask_value(&a, &ptrs(&["/x"]), &fp()), a);
        assert!(!format!("{:?}", fp()).contains("kkkk"));
    }

    #[test]
    fn the_root_pointer_masks_everything() {
        let masked = mask_value(&json!({"a": [1, {"b": "c"}]}), &ptrs(&[""]), &fp());
        assert!(masked["a"][1]["b"]
            .as_str()
            .is_some_and(|s| s.starts_with(MASK_PREFIX)));
        assert!(masked["a"][0]
            .as_str()
            .is_some_and(|s| s.starts_with(MASK_PREFIX)));
    }

    #[test]
    fn scrubbing_replaces_quoted_values_only_at_their_edges() {
        let payload = json!({"data": {"email": "ann@example.com", "pin": 42}});
        let leaves = masked_leaves(&payload, &ptrs(&["/data"]), &fp());
        let text = "field `data.pin`: invalid type: integer `42`, expected a string; 1428 rows; \
                    Key (email)=(ann@example.com) is not present";
        let out = scrub(text, &leaves);
        assert!(!out.contains("ann@example.com"), "{out}");
        assert!(!out.contains("`42`"), "{out}");
        assert!(out.contains("1428"), "{out}");
        assert!(out.contains(&fp().of_leaf(&json!(42))), "{out}");
    }
}
