//! What the scripts answer, decoded strictly: anything else is a
//! protocol fault, never a guess.

use std::time::Duration;

#[cfg(feature = "fuzzing")]
use redis::FromRedisValue;

use super::fence::Raised;
use crate::backend::{LockRecord, Mode};
use crate::error::NodeFault;
use crate::fencing::FencingToken;
use crate::options::MAX_PERMITS;

/// A node's answer to an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcquireReply {
    /// Granted; the node's fence value (for a first hold, its new count),
    /// and for a permit the slot the node gave it.
    Granted { token: u64, slot: Option<u32> },
    /// Held already (a first hold is refused over any lock); the lock's
    /// remaining time to live on the node, when it has one.
    Held { ttl: Option<Duration> },
    /// The owner already has the maximum number of holds.
    TooDeep,
    /// A nested hold's parent is not on the node.
    ParentMissing,
    /// The name is in use here as another kind of resource.
    WrongKind { kind: &'static str },
    /// The semaphore is in use here with another number of permits.
    PermitsMismatch { theirs: u32 },
    /// The node lost its data and waits out its quarantine for `left`
    /// more, as its incarnation `incarnation`; `marked`: this request
    /// found it without its marker and marked it (docs/algorithm.md,
    /// section 15).
    Recovering {
        left: Duration,
        marked: bool,
        incarnation: u64,
    },
    /// The node lost its data and is back from its quarantine, but has no
    /// trusted counter for this resource yet: a repair must write one
    /// into its incarnation `incarnation` first.
    Unrepaired { incarnation: u64 },
}

impl AcquireReply {
    pub(crate) fn parse(reply: &[i64]) -> Result<Self, NodeFault> {
        match reply {
            [1, token, holds] if *token > 0 && *holds > 0 => Ok(Self::Granted {
                token: *token as u64,
                slot: None,
            }),
            [1, token, 1, slot] if *token > 0 && (0..MAX_PERMITS.into()).contains(slot) => {
                Ok(Self::Granted {
                    token: *token as u64,
                    slot: Some(*slot as u32),
                })
            }
            [0, pttl] => Ok(Self::Held {
                ttl: u64::try_from(*pttl).ok().map(Duration::from_millis),
            }),
            [2, _holds] => Ok(Self::TooDeep),
            [3] => Ok(Self::ParentMissing),
            [4, 1] => Ok(Self::WrongKind { kind: "lock" }),
            [4, 2] => Ok(Self::WrongKind { kind: "rwlock" }),
            [4, 3] => Ok(Self::WrongKind { kind: "semaphore" }),
            [6, theirs] if (1..=MAX_PERMITS.into()).contains(theirs) => Ok(Self::PermitsMismatch {
                theirs: *theirs as u32,
            }),
            [7, left, marked @ (0 | 1), incarnation] if *left >= 0 && *incarnation > 0 => {
                Ok(Self::Recovering {
                    left: Duration::from_millis(*left as u64),
                    marked: *marked == 1,
                    incarnation: *incarnation as u64,
                })
            }
            [8, incarnation] if *incarnation > 0 => Ok(Self::Unrepaired {
                incarnation: *incarnation as u64,
            }),
            other => Err(NodeFault::Protocol(format!("acquire returned {other:?}"))),
        }
    }
}

/// The extend script's reply: whether the hold was present.
pub(crate) fn decode_extend(reply: i64) -> Result<bool, NodeFault> {
    match reply {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(NodeFault::Protocol(format!("extend returned {other}"))),
    }
}

/// One hold's reply within a batched extend: as [`decode_extend`], or the
/// text of the error that hold's extend raised on the node.
pub(crate) fn decode_batched_extend(reply: redis::Value) -> Result<bool, NodeFault> {
    match reply {
        redis::Value::Int(reply) => decode_extend(reply),
        redis::Value::BulkString(text) => Err(NodeFault::Server(
            String::from_utf8_lossy(&text).into_owned(),
        )),
        other => Err(NodeFault::Protocol(format!(
            "extend_batch returned {other:?}"
        ))),
    }
}

/// The release script's reply: whether the hold was present.
pub(crate) fn decode_release(reply: i64) -> Result<bool, NodeFault> {
    match reply {
        0 => Ok(false),
        1 | 2 => Ok(true),
        other => Err(NodeFault::Protocol(format!("release returned {other}"))),
    }
}

/// The raise script's reply.
pub(crate) fn decode_raise(reply: &[i64]) -> Result<Raised, NodeFault> {
    match *reply {
        [counter, held @ (0 | 1), missing @ (0 | 1)] if counter >= 0 => Ok(Raised {
            counter: counter as u64,
            holds_lock: held == 1,
            was_missing: missing == 1,
        }),
        _ => Err(NodeFault::Protocol(format!("raise returned {reply:?}"))),
    }
}

/// The fence_read script's reply: the counter where the node trusts it.
pub(crate) fn decode_fence_read(reply: &[i64]) -> Result<Option<u64>, NodeFault> {
    match *reply {
        [1, counter] if counter >= 0 => Ok(Some(counter as u64)),
        [0] => Ok(None),
        _ => Err(NodeFault::Protocol(format!(
            "fence_read returned {reply:?}"
        ))),
    }
}

/// The inspect script's reply: `{}`, or six values per holder: owner,
/// token, holds, pttl, kind and slot (see inspect.lua).
pub(crate) fn decode_inspect(reply: Vec<redis::Value>) -> Result<Vec<LockRecord>, NodeFault> {
    // Not the reply itself: it holds owner ids, which no fault names.
    let bad =
        |why: &str| NodeFault::Protocol(format!("inspect returned {} values: {why}", reply.len()));
    if !reply.len().is_multiple_of(6) {
        return Err(bad("not six per holder"));
    }
    let mut holders = Vec::new();
    for group in reply.chunks(6) {
        let (owner, token, holds, pttl, kind, slot): (String, u64, u32, i64, String, i64) =
            redis::from_redis_value(redis::Value::Array(group.to_vec())).map_err(|_| {
                bad("not an owner, a token, a hold count, a ttl, a kind and a slot")
            })?;
        let mode = match kind.as_str() {
            "lock" => Mode::Exclusive,
            "read" => Mode::Read,
            "write" => Mode::Write,
            other => match other.strip_prefix("permit:").and_then(|n| n.parse().ok()) {
                Some(permits) => Mode::Permit { permits },
                None => return Err(bad("an unknown kind of hold")),
            },
        };
        let slot = u32::try_from(slot).ok();
        // A permit's token, as its guard has it: the slot's count and slot.
        let token = match (mode, slot) {
            (Mode::Permit { .. }, Some(slot)) => token
                .checked_mul(u64::from(MAX_PERMITS))
                .and_then(|t| t.checked_add(u64::from(slot)))
                .ok_or_else(|| bad("a permit's count out of range"))?,
            _ => token,
        };
        let ttl = u64::try_from(pttl).ok().map(Duration::from_millis);
        holders.push(
            LockRecord::new(owner, FencingToken::new(token), holds, ttl).with_mode(mode, slot),
        );
    }
    Ok(holders)
}

/// Decodes one reply, as it came off the wire, the way each script's caller
/// would, and checks what the decoders promise (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_any(value: redis::Value) {
    fn typed<T: FromRedisValue>(value: &redis::Value) -> Option<T> {
        T::from_redis_value(value.clone()).ok()
    }
    if let Some(reply) = typed::<Vec<i64>>(&value) {
        if let Ok(AcquireReply::Granted { token, .. }) = AcquireReply::parse(&reply) {
            assert!(token > 0, "a granted acquire hands out a positive token");
        }
        if let Ok(raised) = decode_raise(&reply) {
            assert!(i64::try_from(raised.counter).is_ok());
        }
    }
    if let Some(reply) = typed::<i64>(&value) {
        let _ = decode_extend(reply);
        let _ = decode_release(reply);
    }
    if let Some(reply) = typed::<Vec<redis::Value>>(&value)
        && let Ok(records) = decode_inspect(reply)
    {
        let _ = format!("{records:?}");
    }
    let _ = typed::<(u64, Vec<Vec<u8>>)>(&value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_strictly() {
        assert_eq!(
            AcquireReply::parse(&[1, 7, 1]).unwrap(),
            AcquireReply::Granted {
                token: 7,
                slot: None
            }
        );
        assert_eq!(
            AcquireReply::parse(&[1, 9, 1, 0]).unwrap(),
            AcquireReply::Granted {
                token: 9,
                slot: Some(0)
            }
        );
        assert_eq!(
            AcquireReply::parse(&[4, 2]).unwrap(),
            AcquireReply::WrongKind { kind: "rwlock" }
        );
        assert_eq!(
            AcquireReply::parse(&[6, 3]).unwrap(),
            AcquireReply::PermitsMismatch { theirs: 3 }
        );
        assert_eq!(
            AcquireReply::parse(&[3]).unwrap(),
            AcquireReply::ParentMissing
        );
        assert_eq!(
            AcquireReply::parse(&[0, 1200]).unwrap(),
            AcquireReply::Held {
                ttl: Some(Duration::from_millis(1200))
            }
        );
        // PTTL -1: a key without expiry (not one of ours).
        assert_eq!(
            AcquireReply::parse(&[0, -1]).unwrap(),
            AcquireReply::Held { ttl: None }
        );
        assert_eq!(
            AcquireReply::parse(&[2, 32]).unwrap(),
            AcquireReply::TooDeep
        );
        for bad in [
            &[][..],
            &[1, 0, 1],
            &[1, -3, 1],
            &[1, 4, 0],
            &[5, 1],
            &[1, 2],
            &[1, 4, 1, -1],
            &[1, 4, 1, 1000],
            &[4, 9],
            &[6, 0],
        ] {
            assert!(AcquireReply::parse(bad).is_err(), "{bad:?}");
        }
    }
}
