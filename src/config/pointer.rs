//! JSON pointers (RFC 6901) as settings name them (`masking.fields`):
//! parsed once at start, checked with the rest of the configuration, compared token by token (is one under the other?), rendered back
//! for `serde_json::Value::pointer_mut` and for the audit entry.

use std::fmt;

/// A parsed JSON pointer: its reference tokens, unescaped. The empty
/// pointer (`""`) is the whole document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses `text`: empty, or `/`-separated tokens where `~` is only ever
    /// `~0` (a `~`) or `~1` (a `/`). The reason it is not a pointer, if not.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer { tokens: Vec::new() });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err("a JSON pointer is empty or starts with `/`".into());
        };
        let tokens = rest
            .split('/')
            .map(unescape)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pointer { tokens })
    }

    /// A pointer from tokens as they are (no escaping needed).
    pub fn from_tokens<I, S>(tokens: I) -> Pointer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Pointer {
            tokens: tokens.into_iter().map(Into::into).collect(),
        }
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether `self` is `other` or an ancestor of it.
    pub fn contains(&self, other: &Pointer) -> bool {
        other.tokens.starts_with(&self.tokens)
    }

    /// Whether one of the two is (under) the other: masking one touches
    /// the other's value.
    pub fn overlaps(&self, other: &Pointer) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// What follows `prefix` in `self`, if `self` is under it.
    pub fn strip_prefix(&self, prefix: &Pointer) -> Option<&[String]> {
        self.tokens.strip_prefix(prefix.tokens.as_slice())
    }

    /// `self` followed by `more`.
    pub fn join(&self, more: &[String]) -> Pointer {
        let mut tokens = self.tokens.clone();
        tokens.extend(more.iter().cloned());
        Pointer { tokens }
    }
}

fn unescape(token: &str) -> Result<String, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err("`~` must be followed by 0 or 1 (`~0` is `~`, `~1` is `/`)".into()),
        }
    }
    Ok(out)
}

impl fmt::Display for Pointer {
    /// The RFC 6901 text (`/card/number`, `/a~1b` for the key `a/b`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.tokens {
            write!(f, "/{}", token.replace('~', "~0").replace('/', "~1"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_rfc_6901() {
        for text in ["", "/data/email", "/a~1b/~0c", "/items/0/name", "/"] {
            let p = Pointer::parse(text).expect(text);
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(
            Pointer::parse("/a~1b/~0c").expect("valid").tokens(),
            ["a/b", "~c"]
        );
        for bad in ["data/email", "/a~2", "/a~", "x"] {
            assert!(Pointer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn containment_is_by_whole_tokens() {
        let p = |t: &str| Pointer::parse(t).expect("valid");
        assert!(p("/data").contains(&p("/data/email")));
        assert!(p("").contains(&p("/data")));
        assert!(!p("/data/e").contains(&p("/data/email")));
        assert!(p("/data/email").overlaps(&p("/data")));
        assert!(!p("/data/email").overlaps(&p("/data/name")));
        assert_eq!(
            p("/transaction/metadata/x").strip_prefix(&p("/transaction")),
            Some(&["metadata".to_owned(), "x".to_owned()][..])
        );
    }
}
