//! A node's own clock: redis-server under libfaketime (Debian's package
//! `libfaketime`), which moves the server's wall clock, the one it expires
//! keys by and answers `TIME` with, by an offset read from a file. The
//! file is read at every clock call (`FAKETIME_NO_CACHE`), so an offset
//! written while the server runs takes effect at once. Its monotonic clock
//! is left alone (`DONT_FAKE_MONOTONIC`): the server's own timers keep
//! working, as on a machine whose wall clock was stepped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::testing::FixtureError;

/// Environment variable naming the libfaketime library to preload, when it
/// is not in Debian's place.
pub const LIBFAKETIME_ENV: &str = "FENCELOCK_LIBFAKETIME";

/// The file in the node's directory that holds its clock's offset; kept
/// when the node's data is wiped, as a machine keeps its clock.
pub(super) const CLOCK_FILE: &str = "clock";

/// Where Debian puts the library, by architecture.
const SEARCHED: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// The library to preload.
pub(super) fn library() -> Result<PathBuf, FixtureError> {
    if let Some(path) = std::env::var_os(LIBFAKETIME_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(FixtureError::FakeClock(format!(
            "{LIBFAKETIME_ENV}={} is not a file",
            path.display()
        )));
    }
    SEARCHED
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            FixtureError::FakeClock(format!(
                "libfaketime.so.1 not found in {SEARCHED:?}: install it with scripts/setup \
                 (Debian package libfaketime) or set {LIBFAKETIME_ENV}"
            ))
        })
}

/// Checks that `binary` can run under libfaketime: a server built with
/// jemalloc cannot (jemalloc asks the time while libfaketime starts, and
/// the server dies at once; libfaketime's issue 130). Debian's
/// redis-server is such a build; the servers scripts/setup fetches into
/// target/servers/ use libc's malloc.
pub(super) fn check_binary(binary: &Path) -> Result<(), FixtureError> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| FixtureError::io(format!("running {} --version", binary.display()), e))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if version.contains("malloc=jemalloc") {
        return Err(FixtureError::FakeClock(format!(
            "{} is built with jemalloc, which libfaketime cannot run under; use a build \
             with libc's malloc, such as those scripts/setup fetches into target/servers/ \
             ({})",
            binary.display(),
            version.trim()
        )));
    }
    Ok(())
}

/// Sets the clock of the node whose clock file is `file` to run `offset_ms`
/// ahead of the machine's (behind, if negative). Written to a new file and
/// renamed over the old one, so the server never reads half an offset.
pub(super) fn write_offset(file: &Path, offset_ms: i64) -> Result<(), FixtureError> {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    let abs = offset_ms.unsigned_abs();
    let text = format!("{sign}{}.{:03}\n", abs / 1000, abs % 1000);
    let new = file.with_extension("new");
    fs::write(&new, text).map_err(|e| FixtureError::io(format!("writing {}", new.display()), e))?;
    fs::rename(&new, file).map_err(|e| FixtureError::io(format!("renaming {}", new.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_in_seconds_with_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CLOCK_FILE);
        for (ms, text) in [
            (0, "+0.000\n"),
            (1250, "+1.250\n"),
            (-500, "-0.500\n"),
            (-2005, "-2.005\n"),
        ] {
            write_offset(&file, ms).unwrap();
            assert_eq!(fs::read_to_string(&file).unwrap(), text);
        }
    }
}
