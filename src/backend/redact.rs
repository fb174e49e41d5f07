//! How ids that are secrets show in `Debug` output.

use std::fmt;

/// An owner id or hold id as `Debug` output shows it: its first 8
/// characters, enough to tell ids apart in a log, never enough to act on
/// (whoever knows a whole id can extend and release its locks). An id too
/// short for a prefix to hide the rest (foreign data) shows nothing.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match self.0.char_indices().nth(8) {
            Some((end, _)) if self.0.chars().count() >= 16 => &self.0[..end],
            _ => "",
        };
        write!(f, "\"{}…\"", shown.escape_debug())
    }
}
