//! How the edge names a status in text that is not JSON (the banner, the dashboard's pages):
//! exactly as the JSON API spells it, so that a page and the API never disagree.
//!
//! Uses: desired_state (the status and health enums and their `as_str()`).

use crate::desired_state::{Health, RefreshPhase, StackStatus, SyncOutcome};

/// A status enum the edge names in text.
pub(super) trait WireName: Copy {
    /// `synced`, `completed`, `succeeded`: the name serde writes in the JSON answers.
    fn wire_name(self) -> String;
}

/// Every status is named by the one line in here: the enum's own `as_str()`, which its unit
/// tests hold equal to the name serde writes. (A macro, because `as_str()` is an inherent
/// method that a generic function cannot call.)
macro_rules! wire_name_from_as_str {
    ($($status:ty),+ $(,)?) => {$(
        impl WireName for $status {
            fn wire_name(self) -> String {
                self.as_str().to_owned()
            }
        }
    )+};
}

wire_name_from_as_str!(StackStatus, Health, RefreshPhase, SyncOutcome);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_named_as_the_json_api_spells_them() {
        assert_eq!(StackStatus::Synced.wire_name(), "synced");
        assert_eq!(StackStatus::Orphaned.wire_name(), "orphaned");
        assert_eq!(RefreshPhase::Completed.wire_name(), "completed");
        assert_eq!(SyncOutcome::Succeeded.wire_name(), "succeeded");
        assert_eq!(Health::Progressing.wire_name(), "progressing");
    }
}
