//! Signed checkpoints: a chain's head (origin, chain, sequence, hash, time)
//! signed with Ed25519 as a C2SP signed note, written to `audit_checkpoints`
//! and appended to `audit.checkpoint_file`, one line each; and reading such
//! lines back, refusing any whose signature does not hold.
//!
//! A note is five lines of text — origin, chain, sequence, the head hash in
//! base64, the time in RFC 3339 — each ending in a newline, and the
//! signature line `— <key name> <base64(key id ‖ signature)>`, where the key
//! id is the first 4 bytes of SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key)
//! and the signature is Ed25519 over the five lines. None of the five
//! holds a space, so the file keeps each note on one line with its newlines
//! written as spaces.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::SigningSeed;

/// The algorithm byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;
/// The second line of every seal note (`seal/<partition>`, see
/// `trail::seal`): the checkpoint file holds both kinds of note.
pub const SEAL_PREFIX: &str = "seal/";
/// What separates the note from its signature in a file line.
const SIGNATURE_MARK: &str = " \u{2014} ";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint line: {0}")]
    Malformed(&'static str),
    #[error("signed by key `{0}`, not by the verifier key")]
    UnknownKey(String),
    #[error("the signature does not verify (wrong key or altered text)")]
    BadSignature,
    #[error("verifier key: {0}")]
    VerifierKey(&'static str),
}

/// One chain head, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub chain: String,
    pub seq: i64,
    pub hash: [u8; 32],
    pub time: DateTime<Utc>,
}

impl Checkpoint {
    /// The note text the signature covers.
    pub fn note(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n",
            self.origin,
            self.chain,
            self.seq,
            B64.encode(self.hash),
            self.time.to_rfc3339_opts(SecondsFormat::Micros, true)
        )
    }
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs checkpoints. Its `Debug` shows the key's name and id only.
pub struct Signer {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(name: &str, seed: &SigningSeed) -> Signer {
        let key = SigningKey::from_bytes(seed.expose_secret());
        let id = key_id(name, &key.verifying_key());
        Signer {
            name: name.to_owned(),
            key,
            id,
        }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The file line of a signed checkpoint.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_note(&checkpoint.note())
    }

    /// The file line of any signed note: lines, each ending in a newline
    /// and none holding a space (a checkpoint, a seal, a manifest's
    /// digest).
    pub fn sign_note(&self, note: &str) -> String {
        let signature = self.key.sign(note.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{}{SIGNATURE_MARK}{} {}",
            note.trim_end().replace('\n', " "),
            self.name,
            B64.encode(blob)
        )
    }
}

/// Checks checkpoints: a name and an Ed25519 public key.
#[derive(Debug, Clone)]
pub struct Verifier {
    name: String,
    key: VerifyingKey,
    id: [u8; 4],
}

impl Verifier {
    /// The verifier key in the signed-note text form:
    /// `<name>+<key id, 8 hex digits>+<base64(0x01 ‖ public key)>`.
    pub fn encode(&self) -> String {
        let mut blob = vec![ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            crate::text::hex(&self.id),
            B64.encode(blob)
        )
    }

    pub fn parse(text: &str) -> Result<Verifier, CheckpointError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::VerifierKey("expected name+id+key"));
        };
        let blob = B64
            .decode(key)
            .map_err(|_| CheckpointError::VerifierKey("the key is not base64"))?;
        let (Some(&ED25519), Ok(public)) = (
            blob.first(),
            <[u8; 32]>::try_from(&blob[1.min(blob.len())..]),
        ) else {
            return Err(CheckpointError::VerifierKey("not an Ed25519 key"));
        };
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| CheckpointError::VerifierKey("not a valid Ed25519 point"))?;
        let id = key_id(name, &key);
        if crate::text::hex(&id) != id_hex.to_ascii_lowercase() {
            return Err(CheckpointError::VerifierKey("the key id does not match"));
        }
        Ok(Verifier {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// Reads one checkpoint line, refusing it unless this key signed it.
    pub fn open(&self, line: &str) -> Result<Checkpoint, CheckpointError> {
        let fields = self.open_note(line)?;
        let [origin, chain, seq, hash, time] = &fields[..] else {
            return Err(CheckpointError::Malformed(
                "expected five fields before the signature",
            ));
        };
        Ok(Checkpoint {
            origin: origin.clone(),
            chain: chain.clone(),
            seq: seq
                .parse()
                .map_err(|_| CheckpointError::Malformed("sequence"))?,
            hash: B64
                .decode(hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(CheckpointError::Malformed("hash"))?,
            time: DateTime::parse_from_rfc3339(time)
                .map_err(|_| CheckpointError::Malformed("time"))?
                .with_timezone(&Utc),
        })
    }

    /// Reads one signed note line, refusing it unless this key signed it:
    /// the note's lines.
    pub fn open_note(&self, line: &str) -> Result<Vec<String>, CheckpointError> {
        let (text, signature) = line
            .trim_end_matches(['\r', '\n'])
            .split_once(SIGNATURE_MARK)
            .ok_or(CheckpointError::Malformed("no signature"))?;
        let (name, blob) = signature
            .split_once(' ')
            .ok_or(CheckpointError::Malformed("signature line"))?;
        if name != self.name {
            return Err(CheckpointError::UnknownKey(name.to_owned()));
        }
        let blob = B64
            .decode(blob)
            .map_err(|_| CheckpointError::Malformed("signature is not base64"))?;
        if blob.len() != 68 {
            return Err(CheckpointError::Malformed("signature length"));
        }
        if blob[..4] != self.id {
            return Err(CheckpointError::UnknownKey(name.to_owned()));
        }
        let signature = Signature::from_slice(&blob[4..])
            .map_err(|_| CheckpointError::Malformed("signature"))?;
        let lines: Vec<String> = text.split(' ').map(str::to_owned).collect();
        let mut note = String::with_capacity(text.len() + 1);
        for l in &lines {
            note.push_str(l);
            note.push('\n');
        }
        self.key
            .verify_strict(note.as_bytes(), &signature)
            .map_err(|_| CheckpointError::BadSignature)?;
        Ok(lines)
    }
}

/// Lines of a checkpoint file the verifier refused: (line number, why).
pub type Refused = Vec<(usize, CheckpointError)>;

/// Every checkpoint of a file, each opened with `verifier`; a refused or
/// malformed line is returned, not skipped.
pub fn read_file(path: &Path, verifier: &Verifier) -> std::io::Result<(Vec<Checkpoint>, Refused)> {
    let text = std::fs::read_to_string(path)?;
    let mut good = Vec::new();
    let mut refused = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A seal (its second line `seal/…`) is signed by the same key and
        // lives in the same file; `audit verify` reads seals from the
        // database and checks them against the archives.
        let opened = verifier.open_note(line).and_then(|lines| {
            if lines.get(1).is_some_and(|l| l.starts_with(SEAL_PREFIX)) {
                Ok(None)
            } else {
                verifier.open(line).map(Some)
            }
        });
        match opened {
            Ok(Some(c)) => good.push(c),
            Ok(None) => {}
            Err(e) => refused.push((i + 1, e)),
        }
    }
    Ok((good, refused))
}

/// Opens the checkpoint file for append, creating it if missing (also the
/// start-up check in `config::audit` does the same).
pub fn open_for_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Appends lines to the checkpoint file and syncs it: a checkpoint counts
/// once it is on disk outside the database.
pub fn append(path: &Path, lines: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = open_for_append(path)?;
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// A fresh random signing seed, as `audit.signing_key` takes it.
pub fn generate_seed() -> String {
    let seed: [u8; 32] = rand::random();
    B64.encode(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    fn signer(name: &str, byte: u8) -> Signer {
        Signer::new(name, &SecretBox::new(Box::new([byte; 32])))
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "bank.example/custodian".into(),
            chain: "partition/orders/3".into(),
            seq: 1234,
            hash: [9; 32],
            time: DateTime::parse_from_rfc3339("2026-11-23T10:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn a_signed_line_opens_with_its_key_and_round_trips() {
        let s = signer("bank.example/custodian", 1);
        let line = s.sign(&checkpoint());
        assert!(!line.contains('\n'));
        assert_eq!(s.verifier().open(&line).expect("verifies"), checkpoint());
        let parsed = Verifier::parse(&s.verifier().encode()).expect("verifier key parses");
        assert_eq!(parsed.open(&line).expect("verifies"), checkpoint());
    }

    #[test]
    fn another_key_or_an_altered_line_is_refused() {
        let line = signer("bank.example/custodian", 1).sign(&checkpoint());
        let other = signer("bank.example/custodian", 2).verifier();
        assert!(matches!(
            other.open(&line),
            Err(CheckpointError::UnknownKey(_))
        ));
        let altered = line.replacen(" 1234 ", " 1233 ", 1);
        let right = signer("bank.example/custodian", 1).verifier();
        assert!(matches!(
            right.open(&altered),
            Err(CheckpointError::BadSignature)
        ));
    }
}
