//! An etcd list's own rules: `etcd://` and the members' `host:port`, the
//! scheme once or on each, an optional user; mapped to the
//! `http://host:port` endpoints [`Etcd::connect`](crate::Etcd::connect)
//! takes.

use std::fmt;

use crate::backend::without_credentials;
use crate::error::{Error, Result};

/// A user name and password, decoded.
type User = (String, String);

/// The members of an etcd list, as [`Etcd::connect`](crate::Etcd::connect)
/// takes them, and the user to sign in as.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct EtcdMembers {
    /// `http://host:port` of each member.
    pub(super) endpoints: Vec<String>,
    /// Whom to sign in as.
    pub(super) user: Option<User>,
}

/// etcd's client port, for a member given without one.
const ETCD_PORT: u16 = 2379;

impl EtcdMembers {
    /// The members `urls` name, every URL an etcd one or a bare member.
    pub(super) fn parse(urls: &[String]) -> Result<Self> {
        let mut members = Self {
            endpoints: Vec::with_capacity(urls.len()),
            user: None,
        };
        for url in urls {
            let bad = |why: &str| {
                let url = without_credentials(url);
                Error::InvalidOptions(format!("bad etcd member {url}: {why}"))
            };
            let (endpoint, user) = member(url).map_err(bad)?;
            if members.endpoints.contains(&endpoint) {
                return Err(bad("listed twice; every member is listed once"));
            }
            members.endpoints.push(endpoint);
            match (&members.user, user) {
                (_, None) => {}
                (None, user) => members.user = user,
                (Some(known), Some(user)) if *known == user => {}
                (Some(_), Some(_)) => return Err(bad(TWO_USERS)),
            }
        }
        Ok(members)
    }
}

const BAD_USER: &str =
    "the user must be `name:password`, percent-encoded where it holds `@`, `:`, `,` or `%`";
const BAD_HOST: &str = "expected etcd://host:port (a host name, an IPv4 address or a \
     [bracketed] IPv6 one, and a port from 1 to 65535), with no path";
const TWO_USERS: &str = "signs in as another user than an earlier member; one cluster has one user";

/// The endpoint of the etcd member `url` (`[etcd://][user:password@]host[:port]`)
/// and its user, or why it is not one.
fn member(url: &str) -> Result<(String, Option<User>), &'static str> {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(credentials(user).ok_or(BAD_USER)?), host_port),
        None => (None, authority),
    };
    Ok((endpoint(host_port).ok_or(BAD_HOST)?, user))
}

/// The list as written in canonical form, the password hidden.
impl fmt::Display for EtcdMembers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("etcd://")?;
        if self.user.is_some() {
            f.write_str("***@")?;
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let host_port = endpoint.strip_prefix("http://").unwrap_or(endpoint);
            write!(f, "{sep}{host_port}")?;
        }
        Ok(())
    }
}

/// `name:password`, percent-decoded; both non-empty.
fn credentials(user: &str) -> Option<User> {
    let (name, password) = user.split_once(':')?;
    let (name, password) = (percent_decoded(name)?, percent_decoded(password)?);
    (!name.is_empty() && !password.is_empty()).then_some((name, password))
}

/// `text` with each `%XX` replaced by the byte it encodes; `None` for a
/// `%` not followed by two hex digits or bytes that are not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |b: u8| (b as char).to_digit(16);
            out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `http://host:port` for a member written `host[:port]`; `None` when it
/// is not one.
fn endpoint(host_port: &str) -> Option<String> {
    let (host, port) = match host_port.strip_prefix('[') {
        // [IPv6]:port
        Some(rest) => {
            let (address, after) = rest.split_once(']')?;
            let valid = !address.is_empty()
                && address
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'));
            (valid.then(|| format!("[{address}]"))?, after)
        }
        None => {
            let end = host_port.find(':').unwrap_or(host_port.len());
            let (host, after) = host_port.split_at(end);
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            (valid.then(|| host.to_owned())?, after)
        }
    };
    let port = match port {
        "" => ETCD_PORT,
        port => port
            .strip_prefix(':')?
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)?,
    };
    Some(format!("http://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, Spec};

    fn error(list: &str) -> Error {
        BackendConfig::parse(list).expect_err(list)
    }

    fn invalid(list: &str) -> String {
        match error(list) {
            Error::InvalidOptions(message) => message,
            other => panic!("{list}: expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn etcd_members_map_to_http_endpoints() {
        let members = |list: &str| match BackendConfig::parse(list).unwrap().spec {
            Spec::Etcd(members) => members,
            #[allow(unreachable_patterns)]
            _ => panic!("{list}: not etcd"),
        };
        let three = members("etcd://h1:2379, h2:2380,etcd://10.0.0.3,[::1]:2379");
        assert_eq!(
            three.endpoints,
            [
                "http://h1:2379",
                "http://h2:2380",
                "http://10.0.0.3:2379",
                "http://[::1]:2379"
            ]
        );
        assert_eq!(three.user, None);
        assert_eq!(
            three.to_string(),
            "etcd://h1:2379,h2:2380,10.0.0.3:2379,[::1]:2379"
        );

        let signed =
            members("etcd://lock%40er:p%3Aw%2C%25@h1:2379,etcd://lock%40er:p%3Aw%2C%25@h2");
        assert_eq!(
            signed.user,
            Some(("lock@er".to_owned(), "p:w,%".to_owned()))
        );
        assert_eq!(signed.to_string(), "etcd://***@h1:2379,h2:2379");
        let parsed = BackendConfig::parse("ETCD://u:pw@h1").unwrap();
        assert_eq!((parsed.backend(), parsed.nodes()), ("etcd", 1));

        for (list, needle) in [
            ("etcd://h1:2379/v3", "no path"),
            ("etcd://h1:2379?x=1", "no path"),
            ("etcd://", "expected etcd://host:port"),
            ("etcd://h1:0", "port from 1"),
            ("etcd://h1:65536", "port from 1"),
            ("etcd://h1:", "port from 1"),
            ("etcd://::1:2379", "[bracketed]"),
            ("etcd://[::1", "[bracketed]"),
            ("etcd://h1,h1:2379", "listed twice"),
            ("etcd://u@h1", "name:password"),
            ("etcd://u:@h1", "name:password"),
            ("etcd://u:p%4@h1", "percent-encoded"),
            ("etcd://u:p@h1,v:p@h2", "another user"),
        ] {
            let message = invalid(list);
            assert!(message.contains(needle), "{list}: {message}");
        }
        match error("etcd://h1:2379,redis://r:6379") {
            Error::MixedBackends { first, other } => {
                assert_eq!(
                    (first.as_str(), other.as_str()),
                    ("etcd://h1:2379", "redis://r:6379")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            error("etcd://h1:2379,http://h2:2379"),
            Error::UnsupportedScheme { scheme, .. } if scheme == "http"
        ));
    }
}
