//! Exact money: an amount's JSON number text read digit by digit into a
//! `BigDecimal` that NUMERIC(24,8) holds exactly, or refused saying why.
//!
//! serde_json without its crate-wide `arbitrary_precision` feature reads a
//! JSON number as an f64, which stores `99999999.99999999` as `100000000`
//! and `1e-400` as 0. So the decoders keep an amount's own text (a
//! `RawValue`) and hand it here; nothing on the way is rounded. Callers: the
//! transaction event decoder (`transaction.amount`) and the domain
//! envelope decoder (`data.amount`), which `POST /produce` also runs.
//!
//! A quoted amount (`"12.50"`) is refused: the event contracts say number,
//! and one spelling per amount keeps payloads comparable byte for byte.

use bigdecimal::num_bigint::BigInt;
use bigdecimal::BigDecimal;

/// Digits before the decimal point a NUMERIC(24,8) column holds.
pub const INTEGER_DIGITS: i128 = 16;
/// Digits after the decimal point a NUMERIC(24,8) column keeps.
pub const FRACTION_DIGITS: i128 = 8;

/// An exponent with more significant digits than this puts a non-zero
/// amount at least 10^(10^18) away from the allowed range whatever its
/// mantissa (no payload has 10^18 digits), so it is refused before any
/// arithmetic: `1e999999999999999999999` costs nothing.
const MAX_EXPONENT_DIGITS: usize = 18;

/// Which signs an amount may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signs {
    /// Transactions: a negative amount is money going out.
    Any,
    /// Orders and payments: the columns say `CHECK (amount >= 0)`.
    NonNegative,
}

/// Why an amount was refused. The caller prefixes the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a JSON number, not {0}")]
    NotANumber(&'static str),
    #[error("must not be negative")]
    Negative,
    #[error(
        "has {0} digits after the decimal point; NUMERIC(24,8) keeps {FRACTION_DIGITS} and an amount is never rounded"
    )]
    TooManyFractionDigits(i128),
    #[error("has {0} digits before the decimal point; NUMERIC(24,8) holds {INTEGER_DIGITS}")]
    TooManyIntegerDigits(i128),
    #[error("has an exponent far outside NUMERIC(24,8)")]
    ExponentOutOfRange,
}

/// The pieces of a JSON number's text: `-? int (. frac)? (e exp)?`.
struct Parts<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    /// The exponent's digits and whether it is negative; `("", false)` if none.
    exponent: (&'a str, bool),
}

/// Reads `text`, one JSON value as it appeared in the payload, as an exact
/// amount that fits NUMERIC(24,8). Trailing zeros do not count against the
/// eight fraction digits (`1.10000000000` is 1.1); nothing is ever rounded.
pub fn parse(text: &str, signs: Signs) -> Result<BigDecimal, MoneyError> {
    let parts = split(text.trim())?;
    let mantissa: String = [parts.int, parts.frac].concat();
    let significant = mantissa.trim_start_matches('0');
    if significant.is_empty() {
        // Zero, whatever its sign or exponent (`-0`, `0e-999`).
        return Ok(BigDecimal::from(0));
    }
    if parts.negative && signs == Signs::NonNegative {
        return Err(MoneyError::Negative);
    }
    let digits = significant.trim_end_matches('0');
    // value = digits × 10^power, digits without leading or trailing zeros.
    let power = exponent(parts.exponent)? - len(parts.frac) + len(significant) - len(digits);
    let fraction = (-power).max(0);
    if fraction > FRACTION_DIGITS {
        return Err(MoneyError::TooManyFractionDigits(fraction));
    }
    let integer = (len(digits) + power).max(0);
    if integer > INTEGER_DIGITS {
        return Err(MoneyError::TooManyIntegerDigits(integer));
    }
    // Both checks passed: at most 24 digits, so u128 holds the value scaled
    // to its fraction digits, and `power.max(0)` is at most 15.
    let scaled = digits
        .parse::<u128>()
        .ok()
        .zip(u32::try_from(power.max(0)).ok())
        .and_then(|(d, p)| d.checked_mul(10u128.checked_pow(p)?))
        .ok_or(MoneyError::NotANumber("text that is not a JSON number"))?;
    let magnitude = BigDecimal::new(BigInt::from(scaled), fraction as i64);
    Ok(if parts.negative {
        -magnitude
    } else {
        magnitude
    })
}

fn len(digits: &str) -> i128 {
    digits.len() as i128
}

/// The exponent's value; refused when it has too many digits to matter.
fn exponent((digits, negative): (&str, bool)) -> Result<i128, MoneyError> {
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_EXPONENT_DIGITS {
        return Err(MoneyError::ExponentOutOfRange);
    }
    let value = if digits.is_empty() {
        0
    } else {
        digits
            .parse::<i128>()
            .map_err(|_| MoneyError::NotANumber("text that is not a JSON number"))?
    };
    Ok(if negative { -value } else { value })
}

/// Splits a JSON number per RFC 8259 §6; anything else says what it is.
fn split(text: &str) -> Result<Parts<'_>, MoneyError> {
    let malformed = MoneyError::NotANumber("text that is not a JSON number");
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => {}
        Some(b'"') => return Err(MoneyError::NotANumber("a string")),
        Some(b't' | b'f') => return Err(MoneyError::NotANumber("a boolean")),
        Some(b'n') => return Err(MoneyError::NotANumber("null")),
        Some(b'{') => return Err(MoneyError::NotANumber("an object")),
        Some(b'[') => return Err(MoneyError::NotANumber("an array")),
        _ => return Err(malformed),
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (rest, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let exponent = match exponent {
        None => Some(("", false)),
        Some(e) => match e.as_bytes().first() {
            Some(b'-') => Some((&e[1..], true)),
            Some(b'+') => Some((&e[1..], false)),
            _ => Some((e, false)),
        }
        .filter(|(digits, _)| is_digits(digits)),
    };
    match (is_digits(int), frac, exponent) {
        (true, None, Some(exponent)) => Ok(Parts {
            negative,
            int,
            frac: "",
            exponent,
        }),
        (true, Some(frac), Some(exponent)) if is_digits(frac) => Ok(Parts {
            negative,
            int,
            frac,
            exponent,
        }),
        _ => Err(malformed),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(text: &str) -> Result<String, MoneyError> {
        parse(text, Signs::Any).map(|d| d.to_plain_string())
    }

    #[test]
    fn the_issue_values() {
        assert_eq!(
            exact("99999999.99999999").as_deref(),
            Ok("99999999.99999999")
        );
        assert_eq!(
            exact("1234567890123456.12345678").as_deref(),
            Ok("1234567890123456.12345678")
        );
        assert_eq!(exact("1e-400"), Err(MoneyError::TooManyFractionDigits(400)));
        assert_eq!(exact("1e308"), Err(MoneyError::TooManyIntegerDigits(309)));
    }

    #[test]
    fn exact_values_and_their_edges() {
        for (text, value) in [
            ("-99999999.99999999", "-99999999.99999999"),
            ("1.10000000000", "1.1"),
            ("100.50", "100.5"),
            ("1E2", "100"),
            ("1e+2", "100"),
            ("12.5e-1", "1.25"),
            ("0.00000001", "0.00000001"),
            ("100000000e-16", "0.00000001"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("0e-999999999999999999999999", "0"),
            ("0.0e999999999999999999999999", "0"),
            ("0001.5", "1.5"),
            (" 7 ", "7"),
            ("9999999999999999", "9999999999999999"),
            ("9999999999999999.99999999", "9999999999999999.99999999"),
            ("1e15", "1000000000000000"),
            ("0.000000012e1", "0.00000012"),
            ("0.000000001e1", "0.00000001"),
        ] {
            assert_eq!(exact(text).as_deref(), Ok(value), "{text}");
        }
    }

    #[test]
    fn what_does_not_fit_is_refused_never_rounded() {
        for (text, error) in [
            ("10000000000000000", MoneyError::TooManyIntegerDigits(17)),
            ("12345678901234567.5", MoneyError::TooManyIntegerDigits(17)),
            ("1e16", MoneyError::TooManyIntegerDigits(17)),
            ("0.123456789", MoneyError::TooManyFractionDigits(9)),
            ("1.000000001", MoneyError::TooManyFractionDigits(9)),
            ("1e-9", MoneyError::TooManyFractionDigits(9)),
            (
                "1e999999999",
                MoneyError::TooManyIntegerDigits(1_000_000_000),
            ),
            (
                "-1e-999999999999999999",
                MoneyError::TooManyFractionDigits(999_999_999_999_999_999),
            ),
            ("1e9999999999999999999", MoneyError::ExponentOutOfRange),
            (
                "1e-99999999999999999999999999",
                MoneyError::ExponentOutOfRange,
            ),
        ] {
            assert_eq!(exact(text), Err(error), "{text}");
        }
    }

    #[test]
    fn signs_and_kinds() {
        assert_eq!(parse("-1", Signs::NonNegative), Err(MoneyError::Negative));
        assert_eq!(
            parse("-0", Signs::NonNegative).map(|d| d.to_string()),
            Ok("0".into())
        );
        assert_eq!(
            parse("-5.25", Signs::Any).map(|d| d.to_string()),
            Ok("-5.25".into())
        );
        for (text, found) in [
            (r#""12.50""#, "a string"),
            ("null", "null"),
            ("true", "a boolean"),
            ("{}", "an object"),
            ("[1]", "an array"),
            ("", "text that is not a JSON number"),
            ("-", "text that is not a JSON number"),
            ("1.", "text that is not a JSON number"),
            (".5", "text that is not a JSON number"),
            ("1e", "text that is not a JSON number"),
            ("1e+", "text that is not a JSON number"),
            ("1.5.5", "text that is not a JSON number"),
            ("1x", "text that is not a JSON number"),
            ("--1", "text that is not a JSON number"),
            ("NaN", "text that is not a JSON number"),
        ] {
            assert_eq!(
                parse(text, Signs::Any),
                Err(MoneyError::NotANumber(found)),
                "{text}"
            );
        }
    }

    #[test]
    fn the_message_says_why() {
        assert_eq!(
            MoneyError::TooManyFractionDigits(400).to_string(),
            "has 400 digits after the decimal point; NUMERIC(24,8) keeps 8 and an amount is never rounded"
        );
        assert_eq!(
            MoneyError::NotANumber("a string").to_string(),
            "must be a JSON number, not a string"
        );
    }
}
