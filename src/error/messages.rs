//! Pieces of the errors' messages.

use std::fmt;

/// The message of [`Error::UnsupportedScheme`](super::Error::UnsupportedScheme).
pub(super) struct SchemeMessage<'a> {
    pub(super) url: &'a str,
    pub(super) scheme: &'a str,
    pub(super) feature: Option<&'static str>,
    pub(super) accepted: &'a [&'static str],
}

impl fmt::Display for SchemeMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            url,
            scheme,
            feature,
            accepted,
        } = *self;
        match feature {
            _ if scheme.is_empty() => write!(f, "URL {url:?} has no scheme")?,
            Some(feature) => write!(
                f,
                "URL {url:?}: {scheme}:// needs fencelock's feature `{feature}`, which this \
                 build lacks"
            )?,
            None => write!(f, "URL {url:?}: no backend takes the scheme {scheme}://")?,
        }
        f.write_str("; this build takes ")?;
        for (i, scheme) in accepted.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{scheme}://")?;
        }
        Ok(())
    }
}

/// Names as a list in a message: `"a", "b"`, or `none`.
pub(super) struct Names<'a>(pub(super) &'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name:?}")?;
        }
        Ok(())
    }
}
