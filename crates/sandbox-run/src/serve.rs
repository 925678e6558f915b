//! The launcher's side of a warm container (see [`crate::Warm`]).
//!
//! The container's standard input is a `SOCK_SEQPACKET` socket whose other
//! end the launcher keeps. Its command is a server that says `ready`, then
//! for every `run` message (carrying the task's standard output and error)
//! runs one task in a child process, kills every other process of the
//! container (as pid 1 of its pid namespace it can), reaps them all and
//! answers `exit CODE` or `signal NUMBER`.
//!
//! The server runs code of the function it serves, so the launcher trusts
//! nothing it says beyond "this task is over": before and after every task
//! it checks that the server is the container's only process, it empties
//! `/io` and `/tmp` itself, and it collects outputs with the same care as
//! after a one-shot run. Anything unexpected ends the container.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::unistd::Pid;

use crate::launcher::{
    Report, Request, WarmTask, chain, clean_up, isolate, prepare_bundle, send_report,
    start_container, wait_container,
};
use crate::spec::Outcome;
use crate::{cgroup, message};

/// The body of a launcher asked for a warm container; returns when the
/// container is gone and cleaned up.
pub(crate) fn serve(request: &Request) {
    let report = |r: &Report| {
        // The caller may be gone; there is nobody else to tell.
        let _ = send_report(r);
    };
    if let Err(e) = isolate(request.isolate_network) {
        return report(&Report::Failed(e));
    }
    let started = prepare_bundle(request)
        .and_then(|()| message::pair().map_err(|e| format!("create the server's socket: {e}")));
    let (server, container_end) = match started {
        Ok(pair) => pair,
        Err(e) => {
            let _ = clean_up(request);
            return report(&Report::Failed(e));
        }
    };
    let pid = match start_container(request, container_end) {
        Ok(pid) => pid,
        Err(outcome) => {
            let failed = clean_up(request).err();
            return report(&failed.map_or(Report::Done(outcome, Vec::new(), None), Report::Failed));
        }
    };
    let mut server = Server {
        request,
        pid,
        socket: server,
        reaped: false,
    };
    // Removed before the last report, as after a one-shot run: a caller
    // that has it finds nothing left.
    let last = server.serve();
    match (server.end(), last) {
        (Err(e), _) => report(&Report::Failed(e)),
        (Ok(()), Some(last)) => report(&last),
        (Ok(()), None) => {}
    }
}

struct Server<'a> {
    request: &'a Request,
    /// The container's init: the server.
    pid: Pid,
    socket: OwnedFd,
    /// Whether the init was waited for.
    reaped: bool,
}

/// Whether the container can take another task.
type Alive = bool;

impl Server<'_> {
    /// Serves tasks until the caller leaves or the container cannot go on;
    /// returns the last report still owed to the caller, if any.
    fn serve(&mut self) -> Option<Report> {
        let caller = std::io::stdin();
        let caller = caller.as_fd();
        match self.next_message(caller) {
            Ok(Some(m)) if m == b"ready" => {}
            Ok(Some(m)) => {
                return Some(Report::Failed(format!(
                    "the server said {:?} instead of ready",
                    String::from_utf8_lossy(&m[..m.len().min(64)])
                )));
            }
            // Ended before it was ready: said as a one-shot run would.
            Ok(None) => return Some(Report::Done(self.wait(), Vec::new(), None)),
            Err(Left) => return None,
        }
        if send_report(&Report::Started).is_err() {
            return None;
        }
        loop {
            let (bytes, fds) = match message::recv(caller) {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(e) => return Some(Report::Failed(format!("read a task: {e}"))),
            };
            let task: WarmTask = match serde_json::from_slice(&bytes) {
                Ok(t) if fds.len() == 2 => t,
                Ok(_) => return Some(Report::Failed("a task needs two descriptors".into())),
                Err(e) => return Some(Report::Failed(format!("bad task: {e}"))),
            };
            let (report, alive) = match self.task(caller, &task, fds) {
                Ok(done) => done,
                Err(Left) => return None,
            };
            if !alive {
                return Some(report);
            }
            if send_report(&report).is_err() {
                return None;
            }
        }
    }

    /// Runs one task; the report and whether the container goes on, or
    /// [`Left`] when the caller is gone.
    fn task(
        &mut self,
        caller: BorrowedFd,
        task: &WarmTask,
        output: Vec<OwnedFd>,
    ) -> Result<(Report, Alive), Left> {
        let bundle = &self.request.bundle;
        let (io_dir, tmp_dir) = (bundle.join("io"), bundle.join("tmp"));
        let prepared = self.only_the_server().and_then(|dirs| {
            crate::io::empty(&io_dir)?;
            crate::io::empty(&tmp_dir)?;
            crate::io::fill(&task.io, &io_dir, self.request.uid, self.request.gid)?;
            Ok(dirs)
        });
        let dirs = match prepared {
            Ok(dirs) => dirs,
            Err(e) => return Ok((Report::Failed(e), false)),
        };
        let oom_before = cgroup::oom_kills(&dirs);
        let fds: Vec<_> = output.iter().map(|fd| fd.as_fd()).collect();
        if let Err(e) = message::send(&self.socket, b"run", &fds) {
            return Ok((Report::Failed(format!("hand the task over: {e}")), false));
        }
        // Only the task may hold its output open, or the caller would wait
        // for an end that never comes.
        drop(output);
        let (mut outcome, mut alive) = match self.next_message(caller)? {
            Some(said) => match parse_end(&said) {
                Some(outcome) => (outcome, true),
                None => (
                    Outcome::FailedToStart(format!(
                        "the server said {:?}",
                        String::from_utf8_lossy(&said[..said.len().min(64)])
                    )),
                    false,
                ),
            },
            None => (self.wait(), false),
        };
        if alive && self.only_the_server().is_err() {
            alive = false;
        }
        if !alive {
            // Nothing may touch `/io` while it is read.
            if let Err(e) = cgroup::kill_all(&dirs) {
                return Ok((Report::Failed(e.to_string()), false));
            }
        }
        if cgroup::oom_kills(&dirs) > oom_before {
            outcome = Outcome::OomKilled;
        }
        Ok(match crate::io::collect(&task.io, &io_dir) {
            Ok(outputs) => (Report::Task(outcome, outputs, alive), alive),
            Err(e) => (Report::Failed(e), false),
        })
    }

    /// The container's cgroup directories, when the server is the only
    /// process in them.
    fn only_the_server(&self) -> Result<Vec<std::path::PathBuf>, String> {
        let dirs = cgroup::container_dirs(&self.request.cgroup_parent, &self.request.id)
            .map_err(|e| e.to_string())?;
        let others = cgroup::processes(&dirs)
            .into_iter()
            .filter(|p| *p != self.pid.as_raw())
            .count();
        match others {
            0 => Ok(dirs),
            n => Err(format!("{n} processes besides the server are left")),
        }
    }

    /// The server's next message (`None`: it is gone), or [`Left`] when
    /// the caller closed its socket first.
    fn next_message(&self, caller: BorrowedFd) -> Result<Option<Vec<u8>>, Left> {
        let ready = message::wait(&[&self.socket, &caller], None).map_err(|_| Left)?;
        if !ready[0] {
            // The caller sends nothing while a task runs: it left.
            return Err(Left);
        }
        Ok(match message::recv(&self.socket) {
            Ok(Some((said, _))) => Some(said),
            Ok(None) | Err(_) => None,
        })
    }

    /// Waits for the server to end, once.
    fn wait(&mut self) -> Outcome {
        self.reaped = true;
        wait_container(self.request, self.pid)
    }

    /// Kills the container, reaps the server and removes everything.
    fn end(mut self) -> Result<(), String> {
        let dirs = cgroup::container_dirs(&self.request.cgroup_parent, &self.request.id)
            .map_err(|e| e.to_string())?;
        cgroup::kill_all(&dirs).map_err(|e| chain(&e))?;
        if !self.reaped {
            self.wait();
        }
        clean_up(self.request)
    }
}

/// The caller closed its socket.
struct Left;

/// `exit CODE` or `signal NUMBER`, as the server ends a task.
fn parse_end(said: &[u8]) -> Option<Outcome> {
    let text = std::str::from_utf8(said).ok()?;
    let (word, number) = text.split_once(' ')?;
    let number: i32 = number.parse().ok()?;
    match word {
        "exit" if (0..=255).contains(&number) => Some(Outcome::Exited(number)),
        "signal" if (1..=64).contains(&number) => Some(Outcome::Signaled(number)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_ends_are_taken() {
        assert_eq!(parse_end(b"exit 0"), Some(Outcome::Exited(0)));
        assert_eq!(parse_end(b"exit 1"), Some(Outcome::Exited(1)));
        assert_eq!(parse_end(b"signal 9"), Some(Outcome::Signaled(9)));
        for bad in [
            &b"exit"[..],
            b"exit -1",
            b"exit 256",
            b"signal 0",
            b"exit 1 ",
            b"quit 0",
            b"\xff",
        ] {
            assert_eq!(parse_end(bad), None, "{bad:?}");
        }
    }
}
