//! Errors as clients read them: `refreshError`, `lastSyncError`, the event stream and the
//! dashboard, all readable without a token.
//!
//! [`PublicErrors`] is the one place that text is made. A client gets what failed, the tool's
//! exit status and the useful end of its message ([`crate::process::ProcessError::summary`]:
//! no command line, values the tool quotes from a compose file elided), with `DATA_DIR`'s
//! absolute path shown as `DATA_DIR`; the full text goes to the debug log, once. Both are
//! redacted. A [`PublicError`] can only be made here (or from docker-cd's own fixed words), so
//! a raw error cannot reach the store's refresh status by accident.
//!
//! Foundation layer: uses config (redaction), process (summaries), untrusted (the log line).

use std::fmt;
use std::path::Path;

use crate::config::Redactor;
use crate::process::{STDERR_TAIL_BYTES, summary_chain};
use crate::untrusted::Untrusted;

/// How much of an error's full text the debug log line holds: a whole stderr tail and its
/// context.
const FULL_TEXT_CHARS: usize = STDERR_TAIL_BYTES + 8 * 1024;

/// Error text fit for clients of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicError(String);

impl PublicError {
    /// docker-cd's own words, with nothing from outside in them.
    pub fn fixed(text: &'static str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PublicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Renders errors for clients: the redactor of the configuration's secrets and the `DATA_DIR`
/// to hide.
#[derive(Debug, Clone, Default)]
pub struct PublicErrors {
    redactor: Redactor,
    /// `DATA_DIR` as it appears in paths (absolute: `config` makes it so).
    data_dir: Option<String>,
}

impl PublicErrors {
    pub fn new(redactor: Redactor, data_dir: Option<&Path>) -> Self {
        let data_dir = data_dir
            .map(|d| d.display().to_string().trim_end_matches('/').to_owned())
            // Replacing "" or "/" would mangle every path, and hide nothing.
            .filter(|d| !d.is_empty());
        Self { redactor, data_dir }
    }

    /// `error` and its causes for clients ([`summary_chain`]); the whole chain
    /// ([`crate::error_chain`]) to the debug log.
    pub fn render(&self, error: &(dyn std::error::Error + 'static)) -> PublicError {
        self.publish(&summary_chain(error), &crate::error_chain(error))
    }

    /// `public`, text composed for clients from summaries, redacted and with `DATA_DIR`
    /// hidden; `full`, the same with every detail, to the debug log.
    pub fn publish(&self, public: &str, full: &str) -> PublicError {
        tracing::debug!(
            error = %Untrusted::bounded(&self.redactor.redact(full), FULL_TEXT_CHARS),
            "the full text of an error the API shows shortened"
        );
        PublicError(self.hide_data_dir(&self.redactor.redact(public)))
    }

    fn hide_data_dir(&self, text: &str) -> String {
        match &self.data_dir {
            Some(dir) if text.contains(dir.as_str()) => text.replace(dir.as_str(), "DATA_DIR"),
            _ => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot prepare the mirror at /srv/cd/data/mirror.git with token s3cret-t0ken")]
    struct Mirror;

    #[test]
    fn data_dir_is_hidden_and_secrets_redacted() {
        let errors = PublicErrors::new(
            Redactor::new([Secret::new("s3cret-t0ken")]),
            Some(Path::new("/srv/cd/data/")),
        );
        assert_eq!(
            errors.render(&Mirror).as_str(),
            "cannot prepare the mirror at DATA_DIR/mirror.git with token [redacted]"
        );
        let root = PublicErrors::new(Redactor::default(), Some(Path::new("/")));
        assert_eq!(root.publish("/a/b", "").as_str(), "/a/b");
    }
}
