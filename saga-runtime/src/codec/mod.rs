//! Codecs (manual section 14): JSON, bincode 2 and postcard behind one trait.
//!
//! History attributes stay JSON so they are readable with SQL; codecs encode task
//! payloads and snapshots. bincode and postcard are not self-describing, so JSON values
//! inside encoded structs go through [`json_value`], which stores them as JSON text in
//! binary formats.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::{Error, Result};

/// Encodes and decodes serde values.
pub trait Codec: Send + Sync {
    /// The name recorded next to encoded data (`"json"`, ...).
    fn name(&self) -> &'static str;
    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;
    /// Decodes a `T` from `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// JSON (serde_json): readable, the default for snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

/// bincode 2 with its standard configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

/// postcard: the smallest encoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostcardCodec;

impl Codec for JsonCodec {
    fn name(&self) -> &'static str {
        "json"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| Error::codec(format!("json encode: {e}")))
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::codec(format!("json decode: {e}")))
    }
}

impl Codec for BincodeCodec {
    fn name(&self) -> &'static str {
        "bincode"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| Error::codec(format!("bincode encode: {e}")))
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let (v, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| Error::codec(format!("bincode decode: {e}")))?;
        if used != bytes.len() {
            return Err(Error::codec(format!(
                "bincode decode: {} trailing bytes",
                bytes.len() - used
            )));
        }
        Ok(v)
    }
}

impl Codec for PostcardCodec {
    fn name(&self) -> &'static str {
        "postcard"
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        postcard::to_stdvec(value).map_err(|e| Error::codec(format!("postcard encode: {e}")))
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        postcard::from_bytes(bytes).map_err(|e| Error::codec(format!("postcard decode: {e}")))
    }
}

/// One of the three codecs, chosen at run time (per engine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AnyCodec {
    /// [`JsonCodec`].
    #[default]
    Json,
    /// [`BincodeCodec`].
    Bincode,
    /// [`PostcardCodec`].
    Postcard,
}

impl AnyCodec {
    /// All codecs.
    pub const ALL: [AnyCodec; 3] = [AnyCodec::Json, AnyCodec::Bincode, AnyCodec::Postcard];

    /// The codec with this name.
    pub fn from_name(name: &str) -> Result<AnyCodec> {
        AnyCodec::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                Error::codec(format!("unknown codec `{name}` (json, bincode, postcard)"))
            })
    }
}

impl Codec for AnyCodec {
    fn name(&self) -> &'static str {
        match self {
            AnyCodec::Json => JsonCodec.name(),
            AnyCodec::Bincode => BincodeCodec.name(),
            AnyCodec::Postcard => PostcardCodec.name(),
        }
    }
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        match self {
            AnyCodec::Json => JsonCodec.encode(value),
            AnyCodec::Bincode => BincodeCodec.encode(value),
            AnyCodec::Postcard => PostcardCodec.encode(value),
        }
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        match self {
            AnyCodec::Json => JsonCodec.decode(bytes),
            AnyCodec::Bincode => BincodeCodec.decode(bytes),
            AnyCodec::Postcard => PostcardCodec.decode(bytes),
        }
    }
}

/// `#[serde(with = "json_value")]` for `serde_json::Value` fields: the value itself in
/// human-readable formats, its JSON text in binary ones (which cannot decode `Value`).
pub mod json_value {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes a JSON value.
    pub fn serialize<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.serialize(s)
        } else {
            s.serialize_str(&v.to_string())
        }
    }

    /// Deserializes a JSON value.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        if d.is_human_readable() {
            serde_json::Value::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: String,
        amount_cents: u64,
        items: Vec<(String, u32)>,
        #[serde(with = "json_value")]
        extra: serde_json::Value,
    }

    #[test]
    fn every_codec_round_trips_and_names_itself() {
        let order = Order {
            id: "order-42".into(),
            amount_cents: 9999,
            items: vec![("book".into(), 2)],
            extra: serde_json::json!({"gift": true, "note": [1, 2]}),
        };
        for c in AnyCodec::ALL {
            let bytes = c.encode(&order).unwrap();
            let back: Order = c.decode(&bytes).unwrap();
            assert_eq!(back, order, "{}", c.name());
            assert_eq!(AnyCodec::from_name(c.name()).unwrap(), c);
        }
        let json = JsonCodec.encode(&order).unwrap().len();
        let post = PostcardCodec.encode(&order).unwrap().len();
        assert!(
            post < json,
            "postcard {post} should be smaller than json {json}"
        );
    }

    #[test]
    fn garbage_is_a_codec_error() {
        for c in AnyCodec::ALL {
            let err = c.decode::<Order>(&[0xff, 0x01]).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Codec, "{}", c.name());
        }
        assert!(AnyCodec::from_name("xml").is_err());
    }
}
