//! An Avro value as JSON text, walked with its schema: records as objects
//! (in field order), unions as their branch's value, enums and strings as
//! strings, bytes and fixed as arrays of numbers, and a `decimal` as the
//! exact number text its scale says (`12.05`, never a float), so an amount
//! in Avro reaches the money parser as the same digits its JSON form has.

use std::collections::HashMap;
use std::fmt::Write as _;

use apache_avro::schema::{Name, Schema};
use apache_avro::types::Value;

use super::mismatch::Mismatch;

/// Named types, for a schema's references.
pub struct Names<'a>(HashMap<Name, &'a Schema>);

impl<'a> Names<'a> {
    pub fn of(schema: &'a Schema) -> Names<'a> {
        let mut names = HashMap::new();
        collect(schema, &mut names);
        Names(names)
    }
}

fn collect<'a>(schema: &'a Schema, names: &mut HashMap<Name, &'a Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.clone(), schema);
            for f in &r.fields {
                collect(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema);
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema);
        }
        Schema::Array(a) => collect(&a.items, names),
        Schema::Map(m) => collect(&m.types, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect(v, names)),
        _ => {}
    }
}

/// `value` (read with `schema`) as JSON text.
pub fn render(value: &Value, schema: &Schema, names: &Names<'_>) -> Result<String, Mismatch> {
    let mut out = String::new();
    write(&mut out, value, schema, names, 0)?;
    Ok(out)
}

const MAX_DEPTH: usize = 128;

fn write(
    out: &mut String,
    value: &Value,
    schema: &Schema,
    names: &Names<'_>,
    depth: usize,
) -> Result<(), Mismatch> {
    if depth > MAX_DEPTH {
        return Err(Mismatch("the Avro value nests too deep".into()));
    }
    let schema = match schema {
        Schema::Ref { name } => *names
            .0
            .get(name)
            .ok_or_else(|| Mismatch(format!("the schema names an unknown type {name}")))?,
        other => other,
    };
    let text = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    match (value, schema) {
        (Value::Null, _) => out.push_str("null"),
        (Value::Boolean(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (Value::Int(i) | Value::Date(i) | Value::TimeMillis(i), _) => {
            let _ = write!(out, "{i}");
        }
        (
            Value::Long(i)
            | Value::TimeMicros(i)
            | Value::TimestampMillis(i)
            | Value::TimestampMicros(i)
            | Value::TimestampNanos(i)
            | Value::LocalTimestampMillis(i)
            | Value::LocalTimestampMicros(i)
            | Value::LocalTimestampNanos(i),
            _,
        ) => {
            let _ = write!(out, "{i}");
        }
        (Value::Float(f), _) => out.push_str(&number(f64::from(*f))?),
        (Value::Double(f), _) => out.push_str(&number(*f)?),
        (Value::String(s) | Value::Enum(_, s), _) => out.push_str(&text(s)),
        (Value::Uuid(u), _) => out.push_str(&text(&u.to_string())),
        (Value::Bytes(b) | Value::Fixed(_, b), _) => {
            out.push('[');
            for (i, byte) in b.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{byte}");
            }
            out.push(']');
        }
        (Value::Decimal(d), Schema::Decimal(s)) => {
            let bytes: Vec<u8> = d
                .try_into()
                .map_err(|e| Mismatch(format!("a decimal: {e}")))?;
            out.push_str(&decimal(&bytes, s.scale)?);
        }
        (Value::Union(i, inner), Schema::Union(u)) => {
            let branch = u
                .variants()
                .get(*i as usize)
                .ok_or_else(|| Mismatch(format!("union branch {i} is not in the schema")))?;
            write(out, inner, branch, names, depth + 1)?;
        }
        (Value::Array(items), Schema::Array(a)) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, &a.items, names, depth + 1)?;
            }
            out.push(']');
        }
        (Value::Map(map), Schema::Map(m)) => {
            out.push('{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&text(k));
                out.push(':');
                write(out, &map[k], &m.types, names, depth + 1)?;
            }
            out.push('}');
        }
        (Value::Record(fields), Schema::Record(r)) => {
            out.push('{');
            for (i, (name, field)) in fields.iter().enumerate() {
                let field_schema = r
                    .lookup
                    .get(name)
                    .and_then(|at| r.fields.get(*at))
                    .map(|f| &f.schema)
                    .ok_or_else(|| Mismatch(format!("field {name} is not in the schema")))?;
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&text(name));
                out.push(':');
                write(out, field, field_schema, names, depth + 1)?;
            }
            out.push('}');
        }
        (other, _) => {
            return Err(Mismatch(format!(
                "an Avro value custodian does not render as JSON: {other:?}"
            )))
        }
    }
    Ok(())
}

fn number(f: f64) -> Result<String, Mismatch> {
    if f.is_finite() {
        Ok(serde_json::Number::from_f64(f)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "0".into()))
    } else {
        Err(Mismatch(format!("{f} is not a JSON number")))
    }
}

/// Big-endian two's complement `bytes`, scaled by `scale`, as number text.
fn decimal(bytes: &[u8], scale: usize) -> Result<String, Mismatch> {
    if bytes.len() > 16 {
        return Err(Mismatch("a decimal of more than 16 bytes".into()));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xffu8; 16] } else { [0u8; 16] };
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(buf);
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return Ok(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    Ok(format!("{sign}{int}.{frac}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_text() {
        assert_eq!(decimal(&[0x04, 0xb5], 2).expect("ok"), "12.05");
        assert_eq!(decimal(&[0xfb, 0x4b], 2).expect("ok"), "-12.05");
        assert_eq!(decimal(&[0x05], 2).expect("ok"), "0.05");
        assert_eq!(decimal(&[0x05], 0).expect("ok"), "5");
        assert!(decimal(&[1; 17], 2).is_err());
    }
}

/// `json` as an Avro value of `schema` (for `produce` and the outbox
/// relay): the inverse of [`render`], a decimal taken from its number's
/// (or string's) exact text.
pub fn from_json(
    json: &serde_json::Value,
    schema: &Schema,
    names: &Names<'_>,
) -> Result<Value, Mismatch> {
    use serde_json::Value as J;
    let schema = match schema {
        Schema::Ref { name } => *names
            .0
            .get(name)
            .ok_or_else(|| Mismatch(format!("the schema names an unknown type {name}")))?,
        other => other,
    };
    let wrong = |what: &str| Mismatch(format!("{json} is not {what}"));
    Ok(match schema {
        Schema::Null => match json {
            J::Null => Value::Null,
            _ => return Err(wrong("null")),
        },
        Schema::Boolean => Value::Boolean(json.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Schema::Int => Value::Int(
            json.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| wrong("an int"))?,
        ),
        Schema::Long => Value::Long(json.as_i64().ok_or_else(|| wrong("a long"))?),
        Schema::Float => Value::Float(json.as_f64().ok_or_else(|| wrong("a float"))? as f32),
        Schema::Double => Value::Double(json.as_f64().ok_or_else(|| wrong("a double"))?),
        Schema::String => Value::String(json.as_str().ok_or_else(|| wrong("a string"))?.to_owned()),
        Schema::Enum(e) => {
            let s = json.as_str().ok_or_else(|| wrong("an enum symbol"))?;
            let at = e
                .symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| wrong("one of the enum's symbols"))?;
            Value::Enum(at as u32, s.to_owned())
        }
        Schema::Decimal(d) => {
            let text = match json {
                J::Number(n) => n.to_string(),
                J::String(s) => s.clone(),
                _ => return Err(wrong("a decimal")),
            };
            Value::Decimal(unscaled(&text, d.scale)?.into())
        }
        Schema::Array(a) => Value::Array(
            json.as_array()
                .ok_or_else(|| wrong("an array"))?
                .iter()
                .map(|item| from_json(item, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Map(m) => Value::Map(
            json.as_object()
                .ok_or_else(|| wrong("an object"))?
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v, &m.types, names)?)))
                .collect::<Result<_, Mismatch>>()?,
        ),
        Schema::Union(u) => {
            let mut last = wrong("any branch of the union");
            for (i, branch) in u.variants().iter().enumerate() {
                match from_json(json, branch, names) {
                    Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                    Err(e) => last = e,
                }
            }
            return Err(last);
        }
        Schema::Record(r) => {
            let object = json.as_object().ok_or_else(|| wrong("an object"))?;
            let mut fields = Vec::with_capacity(r.fields.len());
            for f in &r.fields {
                let value = match (object.get(&f.name), &f.default) {
                    (Some(v), _) => from_json(v, &f.schema, names)?,
                    (None, Some(default)) => from_json(default, &f.schema, names)?,
                    (None, None) => from_json(&J::Null, &f.schema, names)
                        .map_err(|_| Mismatch(format!("field {} is missing", f.name)))?,
                };
                fields.push((f.name.clone(), value));
            }
            Value::Record(fields)
        }
        other => {
            return Err(Mismatch(format!(
                "custodian does not write Avro {other:?} from JSON"
            )))
        }
    })
}

/// `text` (a decimal number) scaled by `scale`, as big-endian two's
/// complement bytes; more fraction digits than the scale are refused.
fn unscaled(text: &str, scale: usize) -> Result<Vec<u8>, Mismatch> {
    let bad = || Mismatch(format!("{text} is not a decimal of scale {scale}"));
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        || frac.len() > scale
    {
        return Err(bad());
    }
    let joined = format!("{int}{frac:0<scale$}");
    let magnitude: i128 = joined.parse().map_err(|_| bad())?;
    let value = if negative { -magnitude } else { magnitude };
    let bytes = value.to_be_bytes();
    // The shortest two's complement form.
    let mut start = 0;
    while start < 15
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    Ok(bytes[start..].to_vec())
}

#[cfg(test)]
mod round_trip {
    use super::*;

    #[test]
    fn decimals_survive_both_ways() {
        for (text, scale) in [
            ("12.05", 2),
            ("-12.05", 2),
            ("0.05", 2),
            ("5", 0),
            ("4999.99", 2),
        ] {
            let bytes = unscaled(text, scale).expect("bytes");
            assert_eq!(decimal(&bytes, scale).expect("text"), text);
        }
        assert!(unscaled("1.234", 2).is_err());
        assert!(unscaled("1e5", 2).is_err());
    }
}

/// `value`, read with `writer`, in `reader`'s shape (Avro schema
/// resolution: fields matched by name, a field the writer lacks takes the
/// reader's default, one the reader lacks is dropped, unions matched by
/// branch type, numbers promoted). Done here rather than by apache-avro's
/// datum reader, which refuses a `bytes` decimal whose length cannot hold
/// its precision's digits (any short amount).
pub fn evolve(
    value: Value,
    writer: &Schema,
    reader: &Schema,
    names: (&Names<'_>, &Names<'_>),
) -> Result<Value, Mismatch> {
    use apache_avro::schema::SchemaKind;
    let resolve = |s: &'_ Schema, n: &Names<'_>| -> Result<Schema, Mismatch> {
        match s {
            Schema::Ref { name } => {
                n.0.get(name)
                    .map(|s| (*s).clone())
                    .ok_or_else(|| Mismatch(format!("the schema names an unknown type {name}")))
            }
            other => Ok(other.clone()),
        }
    };
    let (writer, reader) = (resolve(writer, names.0)?, resolve(reader, names.1)?);
    let no = |why: &str| Mismatch(format!("cannot read into the reader schema: {why}"));
    Ok(match (value, &writer, &reader) {
        (Value::Union(i, inner), Schema::Union(wu), _) => {
            let branch = wu
                .variants()
                .get(i as usize)
                .ok_or_else(|| no("a union branch the writer lacks"))?
                .clone();
            return evolve(*inner, &branch, &reader, names);
        }
        (value, _, Schema::Union(ru)) => {
            let kind = SchemaKind::from(&writer);
            let at = ru
                .variants()
                .iter()
                .position(|b| SchemaKind::from(b) == kind)
                .or_else(|| {
                    ru.variants()
                        .iter()
                        .position(|b| !matches!(b, Schema::Null))
                })
                .ok_or_else(|| no("no union branch fits"))?;
            let branch = ru.variants()[at].clone();
            Value::Union(at as u32, Box::new(evolve(value, &writer, &branch, names)?))
        }
        (Value::Record(fields), Schema::Record(w), Schema::Record(r)) => {
            let mut by_name: HashMap<String, Value> = fields.into_iter().collect();
            let mut out = Vec::with_capacity(r.fields.len());
            for field in &r.fields {
                let value = match (by_name.remove(&field.name), w.lookup.get(&field.name)) {
                    (Some(v), Some(at)) => evolve(v, &w.fields[*at].schema, &field.schema, names)?,
                    _ => match &field.default {
                        Some(default) => from_json(default, &field.schema, names.1)?,
                        None => return Err(no(&format!("field {} has no default", field.name))),
                    },
                };
                out.push((field.name.clone(), value));
            }
            Value::Record(out)
        }
        (Value::Array(items), Schema::Array(w), Schema::Array(r)) => Value::Array(
            items
                .into_iter()
                .map(|v| evolve(v, &w.items, &r.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(map), Schema::Map(w), Schema::Map(r)) => Value::Map(
            map.into_iter()
                .map(|(k, v)| Ok((k, evolve(v, &w.types, &r.types, names)?)))
                .collect::<Result<_, Mismatch>>()?,
        ),
        (Value::Enum(_, symbol), _, Schema::Enum(e)) => {
            let at = e
                .symbols
                .iter()
                .position(|s| *s == symbol)
                .ok_or_else(|| no(&format!("enum symbol {symbol}")))?;
            Value::Enum(at as u32, symbol)
        }
        (Value::Int(i), _, Schema::Long) => Value::Long(i64::from(i)),
        (Value::Int(i), _, Schema::Double) => Value::Double(f64::from(i)),
        (Value::Long(i), _, Schema::Double) => Value::Double(i as f64),
        (Value::Float(f), _, Schema::Double) => Value::Double(f64::from(f)),
        (Value::String(s), _, Schema::Bytes) => Value::Bytes(s.into_bytes()),
        (Value::Bytes(b), _, Schema::String) => {
            Value::String(String::from_utf8(b).map_err(|_| no("bytes that are not UTF-8"))?)
        }
        (value, w, r) if SchemaKind::from(w) == SchemaKind::from(r) => value,
        (_, w, r) => {
            return Err(no(&format!(
                "{:?} does not read as {:?}",
                SchemaKind::from(w),
                SchemaKind::from(r)
            )))
        }
    })
}

#[cfg(test)]
mod evolution {
    use super::*;

    #[test]
    fn a_field_the_writer_lacks_takes_the_readers_default() {
        let writer = Schema::parse_str(
            r#"{"type":"record","name":"T","fields":[{"name":"a","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}}]}"#,
        )
        .expect("writer");
        let reader = Schema::parse_str(
            r#"{"type":"record","name":"T","fields":[{"name":"a","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}},{"name":"s","type":"string","default":"pending"}]}"#,
        )
        .expect("reader");
        let value = Value::Record(vec![("a".into(), Value::Decimal(vec![0x07, 0xd0].into()))]);
        let (wn, rn) = (Names::of(&writer), Names::of(&reader));
        let evolved = evolve(value, &writer, &reader, (&wn, &rn)).expect("evolves");
        assert_eq!(
            render(&evolved, &reader, &rn).expect("renders"),
            r#"{"a":20.00,"s":"pending"}"#
        );
    }
}
