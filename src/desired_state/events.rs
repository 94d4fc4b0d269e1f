//! The changes the `/api/events` stream sends ([`Event`]), published by the store under its
//! lock so their order matches the order of the changes.
//!
//! Uses: the desired state's types only.

use serde_json::Value;

use super::{RefreshStatus, StackRecord};

/// A change, as the `/api/events` stream sends it.
#[derive(Debug, Clone)]
pub enum Event {
    /// Every stack; sent first on connect and after a subscriber fell behind.
    StackSnapshot(Vec<StackRecord>),
    StackUpsert(Box<StackRecord>),
    StackDelete {
        path: String,
    },
    RefreshStatus(Box<RefreshStatus>),
    /// A new deployment record of one stack (the history's JSON, opaque here).
    StackHistory {
        path: String,
        deployment: Value,
    },
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StackSnapshot(_) => "stack.snapshot",
            Self::StackUpsert(_) => "stack.upsert",
            Self::StackDelete { .. } => "stack.delete",
            Self::RefreshStatus(_) => "refresh.status",
            Self::StackHistory { .. } => "stack.history",
        }
    }

    /// The SSE data, as JSON.
    pub fn data(&self) -> Value {
        let value = match self {
            Self::StackSnapshot(records) => serde_json::to_value(records),
            Self::StackUpsert(record) => serde_json::to_value(record),
            Self::StackDelete { path } => Ok(serde_json::json!({ "path": path })),
            Self::RefreshStatus(status) => serde_json::to_value(status),
            Self::StackHistory { path, deployment } => {
                Ok(serde_json::json!({ "path": path, "deployment": deployment }))
            }
        };
        // Serialising these plain structs cannot fail (no maps with non-string keys).
        value.unwrap_or(Value::Null)
    }
}
