//! Receiving PDUs from the socket: the header (BHS, AHS, header digest), then the data
//! segment straight into the buffer it is meant for, or into a small owned copy, or dropped.
//! Padding and digests are checked here; the iSCSI logic above sees whole segments.

use std::ops::Range;
use std::os::fd::RawFd;

use drivers::buffer::IoBuf;
use drivers::error::IoError;
use drivers::ops;
use engine::copy_stats::{self, CopyPath};

use crate::digest;
use crate::ffp::ConnEnd;
use crate::pdu::{padded_len, Bhs, BHS_LEN};

/// Receives one PDU header (BHS, AHS, header digest) into `hdr`.
pub(super) async fn recv_header(
    fd: RawFd,
    mut hdr: IoBuf,
    header_digest: bool,
) -> (Result<(Bhs, usize), ConnEnd>, IoBuf) {
    let (res, back) = ops::recv_exact(fd, hdr, 0..BHS_LEN).await;
    hdr = back;
    if let Err(e) = res {
        return (Err(ConnEnd::Io(e)), hdr);
    }
    let Some(bhs) = Bhs::from_slice(&hdr[..BHS_LEN]) else {
        return (Err(ConnEnd::Protocol("short header".into())), hdr);
    };
    let ahs_bytes = usize::from(bhs.total_ahs_length_words()) * 4;
    let digest_bytes = if header_digest { 4 } else { 0 };
    let total = BHS_LEN + ahs_bytes + digest_bytes;
    if total > hdr.len() {
        return (Err(ConnEnd::Protocol("AHS too long".into())), hdr);
    }
    if total > BHS_LEN {
        let (res, back) = ops::recv_exact(fd, hdr, BHS_LEN..total).await;
        hdr = back;
        if let Err(e) = res {
            return (Err(ConnEnd::Io(e)), hdr);
        }
    }
    if header_digest {
        let wire = [hdr[total - 4], hdr[total - 3], hdr[total - 2], hdr[total - 1]];
        if digest::verify_header_digest(&hdr[..BHS_LEN + ahs_bytes], wire).is_err() {
            // The lengths in a header that failed its digest cannot be trusted: drop the
            // connection (RFC 7143 §7.8).
            return (Err(ConnEnd::Protocol("header digest error".into())), hdr);
        }
    }
    (Ok((bhs, ahs_bytes)), hdr)
}

/// Receives a data segment of `len` bytes (plus padding and digest) into `buf[offset..]`.
/// Returns Ok(false) on a data digest mismatch.
pub(super) async fn recv_data_into(
    fd: RawFd,
    buf: IoBuf,
    offset: usize,
    len: usize,
    data_digest: bool,
) -> (Result<bool, IoError>, IoBuf) {
    let (res, buf) = ops::recv_exact(fd, buf, offset..offset + len).await;
    if let Err(e) = res {
        return (Err(e), buf);
    }
    let tail_len = padded_len(len) - len + if data_digest { 4 } else { 0 };
    if tail_len == 0 {
        return (Ok(true), buf);
    }
    let tail = IoBuf::zeroed(8);
    let (res, tail) = ops::recv_exact(fd, tail, 0..tail_len).await;
    if let Err(e) = res {
        return (Err(e), buf);
    }
    if data_digest {
        let d = tail_len - 4;
        let wire = [tail[d], tail[d + 1], tail[d + 2], tail[d + 3]];
        let ok = digest::verify_data_digest(&buf[offset..offset + len], wire).is_ok();
        return (Ok(ok), buf);
    }
    (Ok(true), buf)
}

/// Receives a small data segment into a new Vec (login and text keys, ping data), a copy
/// counted on [`CopyPath::IscsiReceive`]; Ok(None) on digest error.
pub(super) async fn recv_small(
    fd: RawFd,
    len: usize,
    data_digest: bool,
) -> Result<Option<Vec<u8>>, IoError> {
    if len == 0 {
        return Ok(Some(Vec::new()));
    }
    let buf = IoBuf::zeroed(len);
    let (res, buf) = recv_data_into(fd, buf, 0, len, data_digest).await;
    if !res? {
        return Ok(None);
    }
    copy_stats::record(CopyPath::IscsiReceive, len);
    Ok(Some(buf.to_vec()))
}

/// Receives the rest of a data segment of `dsl` bytes whose first `kept.len()` bytes were
/// received into `kept`: the remaining data (dropped), the padding and the digest. Returns
/// Ok(false) on a data digest mismatch (the digest covers the whole segment).
pub(super) async fn recv_segment_tail(
    fd: RawFd,
    kept: &[u8],
    dsl: usize,
    data_digest: bool,
) -> Result<bool, IoError> {
    let tail_len = padded_len(dsl) - kept.len() + if data_digest { 4 } else { 0 };
    if tail_len == 0 {
        return Ok(true);
    }
    let tail = IoBuf::zeroed(tail_len);
    let (res, tail) = ops::recv_exact(fd, tail, 0..tail_len).await;
    res?;
    if !data_digest {
        return Ok(true);
    }
    let rest = &tail[..dsl - kept.len()];
    let computed = digest::data_digest_parts(&[kept, rest]);
    Ok(tail[tail_len - 4..] == computed)
}

pub(super) async fn discard_data(fd: RawFd, len: usize, data_digest: bool) -> Result<(), IoError> {
    let mut remaining = padded_len(len) + if data_digest { 4 } else { 0 };
    let mut scratch = IoBuf::zeroed(64 * 1024);
    while remaining > 0 {
        let n = remaining.min(scratch.len());
        let (res, back) = ops::recv_exact(fd, scratch, 0..n).await;
        scratch = back;
        res?;
        remaining -= n;
    }
    Ok(())
}

/// Receives a Data-Out segment of `dsl` bytes: the first `keep.len()` bytes (at least one)
/// into `buf[keep]`, the rest dropped; the digest covers the whole segment. Ok(false) on a
/// data digest mismatch.
pub(super) async fn recv_data(
    fd: RawFd,
    buf: IoBuf,
    keep: Range<usize>,
    dsl: usize,
    data_digest: bool,
) -> (Result<bool, IoError>, IoBuf) {
    if keep.len() == dsl {
        return recv_data_into(fd, buf, keep.start, keep.len(), data_digest).await;
    }
    // Part of this PDU is past what the command takes: keep the front, drop the rest.
    // The digest covers the whole segment; it is checked over both parts.
    let (res, buf) = ops::recv_exact(fd, buf, keep.clone()).await;
    if let Err(e) = res {
        return (Err(e), buf);
    }
    let res = recv_segment_tail(fd, &buf[keep], dsl, data_digest).await;
    (res, buf)
}

/// Receives a command's immediate data, a segment of `dsl` bytes whose first `take` land in
/// `buf` (when the command takes data), the rest, padding and digest after it. Ok(false) on
/// a data digest mismatch.
pub(super) async fn recv_immediate(
    fd: RawFd,
    mut buf: Option<IoBuf>,
    take: usize,
    dsl: usize,
    data_digest: bool,
) -> (Result<bool, IoError>, Option<IoBuf>) {
    if let Some(b) = buf.take() {
        if take > 0 {
            // Exactly the bytes kept: the padding follows the whole segment (RFC 7143 §11.2.3),
            // not the part kept, and is read with the rest below.
            let (res, b) = ops::recv_exact(fd, b, 0..take).await;
            buf = Some(b);
            if let Err(e) = res {
                return (Err(e), buf);
            }
        } else {
            buf = Some(b);
        }
    }
    // Excess immediate data (beyond what the command takes), pad and digest.
    let kept = buf.as_ref().map_or(&[][..], |b| &b[..take]);
    let res = recv_segment_tail(fd, kept, dsl, data_digest).await;
    (res, buf)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use drivers::executor::{BackendChoice, Reactor, ReactorConfig};

    use super::*;

    /// Sends `segment` (padded, with a data digest when asked) and then a marker on one end of
    /// a socket pair, receives the segment's first `take` bytes as immediate data on the
    /// other, and returns (what recv_immediate said, the bytes kept, the 4 bytes read next).
    fn immediate(segment: &[u8], take: usize, digest_on: bool) -> (bool, Vec<u8>, [u8; 4]) {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        let mut wire = segment.to_vec();
        wire.resize(padded_len(segment.len()), 0);
        if digest_on {
            wire.extend_from_slice(&digest::data_digest(segment));
        }
        wire.extend_from_slice(b"NEXT");
        std::io::Write::write_all(&mut &theirs, &wire).expect("send");
        // Closed: a receive that reads past the marker ends instead of waiting.
        drop(theirs);
        let reactor = Reactor::new(&ReactorConfig {
            backend: BackendChoice::Epoll,
            buffer_count: 4,
            buffer_bytes: 4096,
            blocking_threads: 1,
            ..ReactorConfig::default()
        })
        .expect("reactor");
        let fd = ours.as_raw_fd();
        reactor.block_on(async move {
            let (res, buf) =
                recv_immediate(fd, Some(IoBuf::zeroed(64)), take, segment.len(), digest_on).await;
            let ok = res.expect("received");
            let kept = buf.expect("buffer")[..take].to_vec();
            let (res, next) = ops::recv_exact(fd, IoBuf::zeroed(4), 0..4).await;
            res.expect("marker");
            (ok, kept, [next[0], next[1], next[2], next[3]])
        })
    }

    #[test]
    fn immediate_data_of_any_length_leaves_the_stream_at_the_next_pdu() {
        let segment: Vec<u8> = (1..=13).collect();
        for digest_on in [false, true] {
            // All of it kept, part of it kept (odd and aligned), none kept.
            for take in [13, 5, 8, 0] {
                let (ok, kept, next) = immediate(&segment, take, digest_on);
                assert!(ok, "digest of a 13-byte segment, {take} kept");
                assert_eq!(kept, segment[..take], "{take} kept, digest {digest_on}");
                assert_eq!(&next, b"NEXT", "{take} kept, digest {digest_on}");
            }
        }
    }
}
