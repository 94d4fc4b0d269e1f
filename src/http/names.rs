//! How the edge names a status in text that is not JSON (the banner, the dashboard's pages):
//! exactly as the JSON API spells it, so that a page and the API never disagree.
//!
//! Uses: desired_state (the status enums), serde.

use serde::Serialize;

use crate::desired_state::{RefreshPhase, StackStatus, SyncOutcome};

/// A status enum the edge names in text.
pub(super) trait WireName: Copy {
    /// `synced`, `completed`, `succeeded`: the name serde writes in the JSON answers.
    fn wire_name(self) -> String;
}

/// Every status is named by the one line in here. It reads serde's name back, the only name
/// the enums have today; once they have their own `as_str()`, that line becomes
/// `self.as_str().to_owned()`.
macro_rules! wire_name_from_serde {
    ($($status:ty),+ $(,)?) => {$(
        impl WireName for $status {
            fn wire_name(self) -> String {
                serde_name(&self)
            }
        }
    )+};
}

wire_name_from_serde!(StackStatus, RefreshPhase, SyncOutcome);

/// What a unit enum variant serialises to; empty for anything else, which the enums above
/// are not.
fn serde_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named_as_the_json_api_spells_them() {
        assert_eq!(StackStatus::Synced.wire_name(), "synced");
        assert_eq!(StackStatus::Orphaned.wire_name(), "orphaned");
        assert_eq!(RefreshPhase::Completed.wire_name(), "completed");
        assert_eq!(SyncOutcome::Succeeded.wire_name(), "succeeded");
    }
}
