//! Identifiers.

use std::fmt;
use std::sync::Arc;

/// The id of one saga execution (the workflow id chosen at start). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SagaId(Arc<str>);

impl SagaId {
    /// Wraps a string id.
    pub fn new(id: impl AsRef<str>) -> Self {
        SagaId(Arc::from(id.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SagaId {
    fn from(s: &str) -> Self {
        SagaId::new(s)
    }
}

impl From<String> for SagaId {
    fn from(s: String) -> Self {
        SagaId(Arc::from(s))
    }
}

impl From<&String> for SagaId {
    fn from(s: &String) -> Self {
        SagaId::new(s)
    }
}

impl From<&SagaId> for SagaId {
    fn from(s: &SagaId) -> Self {
        s.clone()
    }
}

impl AsRef<str> for SagaId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for SagaId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SagaId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(SagaId::from(s))
    }
}
