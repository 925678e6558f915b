//! Whole messages, with file descriptors, over `SOCK_SEQPACKET` Unix
//! sockets: between a caller and its launcher, and between a launcher and
//! a warm container's server (see [`crate::Warm`]).
//!
//! A message arrives whole or not at all, so no framing is needed; one
//! larger than the receiver's bound is an error, never a partial read.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg,
    sendmsg, socketpair,
};

/// The largest message read: requests carry a runtime spec and layer
/// paths, reports a list of outputs.
pub(crate) const MAX: usize = 1 << 20;
/// The most descriptors one message carries.
const MAX_FDS: usize = 4;

/// A connected pair of sockets, both close-on-exec.
pub(crate) fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)
}

/// Sends `bytes` (not empty: an empty message reads as the end) and `fds`.
pub(crate) fn send(socket: impl AsFd, bytes: &[u8], fds: &[BorrowedFd]) -> std::io::Result<()> {
    debug_assert!(!bytes.is_empty());
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other(format!(
            "more than {MAX_FDS} descriptors in one message"
        )));
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg(&socket, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and the descriptors it carries; `None` when the
/// other side is gone.
pub(crate) fn recv(socket: impl AsFd) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg(&socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => break msg,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let fds: Vec<OwnedFd> = control
        .drain()
        .flat_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
            _ => Vec::new(),
        })
        .collect();
    if msg
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(std::io::Error::other(format!(
            "a message larger than {MAX} bytes or with more than {MAX_FDS} descriptors"
        )));
    }
    if msg.bytes == 0 {
        return Ok(None);
    }
    buf.truncate(msg.bytes);
    Ok(Some((buf, fds)))
}

/// Waits until one of `fds` is readable (or closed), or `deadline` passes;
/// returns which are ready.
pub(crate) fn wait(fds: &[&dyn AsFd], deadline: Option<Instant>) -> std::io::Result<Vec<bool>> {
    loop {
        let mut polls: Vec<PollFd> = fds
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now()).as_millis();
                // Rounded up, so that a wake-up is never early.
                PollTimeout::try_from((left + 1).min(i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut polls, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = polls
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        if ready.iter().any(|r| *r) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn messages_arrive_whole_with_their_descriptors() {
        let (a, b) = pair().unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        send(&a, b"hello", &[w.as_fd()]).unwrap();
        send(&a, &[7u8; 100_000], &[]).unwrap();
        let (first, fds) = recv(&b).unwrap().unwrap();
        assert_eq!(first, b"hello");
        assert_eq!(fds.len(), 1);
        // The received descriptor is the pipe's write end.
        std::fs::File::from(fds.into_iter().next().unwrap())
            .write_all(b"x")
            .unwrap();
        drop(w.flush());
        drop(w);
        let mut got = [0u8; 1];
        (&r).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        let (second, fds) = recv(&b).unwrap().unwrap();
        assert_eq!(second.len(), 100_000);
        assert!(fds.is_empty());
        drop(a);
        assert!(recv(&b).unwrap().is_none());
    }

    #[test]
    fn waiting_reports_the_ready_socket_or_the_deadline() {
        let (a, b) = pair().unwrap();
        let (c, _d) = pair().unwrap();
        let soon = Instant::now() + std::time::Duration::from_millis(20);
        assert_eq!(wait(&[&b, &c], Some(soon)).unwrap(), [false, false]);
        assert!(Instant::now() >= soon);
        send(&a, b"x", &[]).unwrap();
        assert_eq!(wait(&[&b, &c], None).unwrap(), [true, false]);
    }
}
