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

/// A URL as messages and `Debug` output show it: any user name and
/// password (what stands before the last `@` after the scheme) replaced by
/// `***`, so that a configuration error or a log line never carries a
/// password. The same without a scheme (`user:password@host:port`).
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(dead_code))]
pub(crate) fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        (None, Some(at)) => format!("***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn credentials_are_hidden_and_the_rest_kept() {
        for (url, shown) in [
            ("redis://:s3cret@10.0.0.1:6379", "redis://***@10.0.0.1:6379"),
            ("redis://user:p@ss@h:1/0", "redis://***@h:1/0"),
            ("etcd://u:hunter2@h1:2379", "etcd://***@h1:2379"),
            ("redis://10.0.0.1:6379", "redis://10.0.0.1:6379"),
            ("h2:2379", "h2:2379"),
            ("u:hunter2@h2:2379", "***@h2:2379"),
        ] {
            assert_eq!(without_credentials(url), shown, "{url}");
        }
    }
}
