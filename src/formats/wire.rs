//! The Confluent wire format: a magic byte 0, a 4-byte big-endian schema
//! id, then (Protobuf only) the message indexes as zig-zag varints, then
//! the body. Pure: bytes in, the header and the body out, or why not.

/// A record's header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: u32,
    /// Protobuf: the path of the message type in its file (`[0]`, the
    /// first, is written as a single 0 byte); empty for other formats.
    pub indexes: Vec<i32>,
    pub body: &'a [u8],
}

/// Why a record is not in the wire format (error kind `wire_format`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty payload: no wire-format header")]
    Empty,
    #[error("the first byte is {0:#04x}, not the wire format's magic byte 0")]
    Magic(u8),
    #[error("{0} bytes: shorter than the 5-byte wire-format header")]
    Short(usize),
    #[error("the Protobuf message indexes are cut short or malformed")]
    Indexes,
}

/// At most this many message indexes (nesting depth) are read.
const MAX_INDEXES: usize = 64;

/// Splits a record in the wire format; `protobuf` reads message indexes.
pub fn split(bytes: &[u8], protobuf: bool) -> Result<Framed<'_>, WireError> {
    let (&magic, rest) = bytes.split_first().ok_or(WireError::Empty)?;
    if magic != 0 {
        return Err(WireError::Magic(magic));
    }
    if rest.len() < 4 {
        return Err(WireError::Short(bytes.len()));
    }
    let (id, mut body) = rest.split_at(4);
    let schema_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    let mut indexes = Vec::new();
    if protobuf {
        let count = zigzag(varint(&mut body)?);
        if count < 0 || count as usize > MAX_INDEXES {
            return Err(WireError::Indexes);
        }
        if count == 0 {
            indexes.push(0);
        }
        for _ in 0..count {
            indexes.push(zigzag(varint(&mut body)?));
        }
    }
    Ok(Framed {
        schema_id,
        indexes,
        body,
    })
}

/// The header of a record with `schema_id` (and, for Protobuf, `indexes`).
pub fn header(schema_id: u32, indexes: Option<&[i32]>) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    match indexes {
        None => {}
        Some([0]) | Some([]) => out.push(0),
        Some(list) => {
            put_varint(&mut out, unzigzag(list.len() as i32));
            for i in list {
                put_varint(&mut out, unzigzag(*i));
            }
        }
    }
    out
}

fn varint(bytes: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first().ok_or(WireError::Indexes)?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::Indexes)
}

fn zigzag(v: u64) -> i32 {
    ((v >> 1) as i64 ^ -((v & 1) as i64)) as i32
}

fn unzigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_named() {
        let mut avro = header(7, None);
        avro.extend_from_slice(b"body");
        assert_eq!(
            split(&avro, false),
            Ok(Framed {
                schema_id: 7,
                indexes: vec![],
                body: b"body"
            })
        );
        let mut proto = header(300, Some(&[1, 2]));
        proto.push(9);
        let framed = split(&proto, true).expect("framed");
        assert_eq!(
            (framed.schema_id, framed.indexes, framed.body),
            (300, vec![1, 2], &[9u8][..])
        );
        let first = header(1, Some(&[0]));
        assert_eq!(split(&first, true).expect("framed").indexes, vec![0]);
        assert_eq!(split(b"", false), Err(WireError::Empty));
        assert_eq!(split(b"{\"a\":1}", false), Err(WireError::Magic(b'{')));
        assert_eq!(split(&[0, 0, 1], false), Err(WireError::Short(3)));
        assert_eq!(split(&[0, 0, 0, 0, 1, 0x80], true), Err(WireError::Indexes));
    }
}
