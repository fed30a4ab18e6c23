//! Delivery tags: a JetStream delivery is identified by its ack subject, which the
//! server sets as the message's reply subject. Acking, nak'ing, terminating or
//! reporting progress is a message to that subject, so the tag carries it whole
//! (`handle`) beside the stream sequence (`seq`); nothing about a delivery needs to be
//! remembered in the process that fetched it.

use saga_runtime::port::DeliveryTag;
use saga_runtime::{Error, ErrorKind, Result};

const PREFIX: &str = "$JS.ACK.";

/// The parts of an ack subject this adapter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckSubject<'a> {
    /// The stream the message is in.
    pub(crate) stream: &'a str,
    /// The consumer that delivered it.
    pub(crate) consumer: &'a str,
    /// How many times it has been delivered, this delivery included.
    pub(crate) delivered: u32,
    /// Its sequence number in the stream.
    pub(crate) stream_seq: u64,
}

/// Parses an ack subject. Two layouts exist:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`
/// and, from servers that know domains and accounts,
/// `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>...`.
pub(crate) fn parse_ack_subject(subject: &str) -> Option<AckSubject<'_>> {
    let rest = subject.strip_prefix(PREFIX)?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let at = match tokens.len() {
        7 => 0,
        n if n >= 9 => 2,
        _ => return None,
    };
    Some(AckSubject {
        stream: tokens[at],
        consumer: tokens[at + 1],
        delivered: tokens[at + 2].parse().ok()?,
        stream_seq: tokens[at + 3].parse().ok()?,
    })
}

/// The ack subject of `tag`, checked against the stream this queue uses. A tag from
/// another adapter, another stream, or edited by hand is a `Validation` error.
pub(crate) fn check<'a>(tag: &'a DeliveryTag, stream: &str) -> Result<(&'a str, AckSubject<'a>)> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::Validation,
            format!("not a delivery tag of this NATS task queue: {why}"),
        )
        .with("delivery", tag.seq)
        .with("handle", format!("{:?}", tag.handle))
    };
    let reply = tag
        .handle
        .as_deref()
        .ok_or_else(|| bad("it has no ack subject"))?;
    let ack =
        parse_ack_subject(reply).ok_or_else(|| bad("its handle is not a JetStream ack subject"))?;
    if ack.stream != stream {
        return Err(bad("it belongs to another stream").with("stream", stream));
    }
    if ack.stream_seq != tag.seq {
        return Err(bad("its sequence does not match its ack subject"));
    }
    Ok((reply, ack))
}

/// The tag of a delivery whose ack subject is `reply`.
pub(crate) fn tag_for(reply: &str, ack: &AckSubject<'_>) -> DeliveryTag {
    DeliveryTag {
        seq: ack.stream_seq,
        handle: Some(reply.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts() {
        let v1 = "$JS.ACK.SAGA_TASKS.saga-workers-q.3.17.9.1700000000000000000.0";
        let v2 = "$JS.ACK._.ACCHASH.SAGA_TASKS.saga-workers-q.3.17.9.1700000000000000000.0.tok";
        for s in [v1, v2] {
            assert_eq!(
                parse_ack_subject(s),
                Some(AckSubject {
                    stream: "SAGA_TASKS",
                    consumer: "saga-workers-q",
                    delivered: 3,
                    stream_seq: 17,
                }),
                "{s}"
            );
        }
        assert_eq!(parse_ack_subject("$JS.ACK.S.c.x.1.1.1.0"), None);
        assert_eq!(parse_ack_subject("_INBOX.abc"), None);
    }

    #[test]
    fn foreign_tags_are_validation_errors() {
        let good = "$JS.ACK.S.c.1.5.1.1.0";
        let cases = [
            DeliveryTag {
                seq: 5,
                handle: None,
            },
            DeliveryTag {
                seq: 5,
                handle: Some("_INBOX.x".into()),
            },
            DeliveryTag {
                seq: 6,
                handle: Some(good.into()),
            },
            DeliveryTag {
                seq: 5,
                handle: Some("$JS.ACK.OTHER.c.1.5.1.1.0".into()),
            },
        ];
        for tag in &cases {
            assert_eq!(
                check(tag, "S").unwrap_err().kind,
                ErrorKind::Validation,
                "{tag:?}"
            );
        }
        let tag = DeliveryTag {
            seq: 5,
            handle: Some(good.into()),
        };
        assert_eq!(check(&tag, "S").unwrap().1.delivered, 1);
    }
}
