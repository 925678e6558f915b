//! Live output of a detached container: its standard output and error cut
//! into lines as they are written, queued for the caller within a byte
//! bound. A caller that falls behind loses lines (counted), never stalls
//! the container: the pipes are always read at the speed they are written.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// What a queued line costs besides its bytes (its allocation and place in
/// the queue), so that a flood of empty lines is bounded too.
const LINE_COST: usize = 64;

/// How a detached container's output is handed over as it is written
/// ([`Sandbox::start_detached_live`](crate::Sandbox::start_detached_live)).
///
/// ```
/// let live = sandbox_run::LiveOutput::default();
/// assert_eq!(live.max_line_bytes, 16 << 10);
/// assert_eq!(live.max_queued_bytes, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveOutput {
    /// The longest line handed over (default 16 KiB); a longer one comes
    /// in pieces of this size.
    pub max_line_bytes: usize,
    /// The most bytes waiting for the caller (default 1 MiB, each line
    /// counted with a small overhead); lines written while it is reached
    /// are dropped and counted ([`OutputEvent::Dropped`]).
    pub max_queued_bytes: usize,
}

impl Default for LiveOutput {
    fn default() -> Self {
        Self {
            max_line_bytes: 16 << 10,
            max_queued_bytes: 1 << 20,
        }
    }
}

impl LiveOutput {
    pub(crate) fn validate(&self) -> Result<()> {
        let needed = self.max_line_bytes.checked_add(LINE_COST);
        if self.max_line_bytes == 0 || needed.is_none_or(|n| self.max_queued_bytes < n) {
            return Err(Error::InvalidSpec {
                reason: format!(
                    "live output: max_queued_bytes ({}) must hold a line of max_line_bytes ({}, not 0) and {LINE_COST} more",
                    self.max_queued_bytes, self.max_line_bytes
                ),
            });
        }
        Ok(())
    }
}

/// One of a container's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What [`Detached::recv_output`](crate::Detached::recv_output) hands
/// over.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputEvent {
    /// A line as written, without its `\n` (nor a `\r` before it); a line
    /// longer than [`LiveOutput::max_line_bytes`] comes in pieces, and the
    /// last line may have had no `\n`.
    Line {
        /// Where it was written.
        stream: Stream,
        /// Its bytes (any encoding).
        line: Vec<u8>,
    },
    /// Output of `stream` written while the queue was full and dropped;
    /// it comes after the lines queued before it.
    Dropped {
        /// Where it was written.
        stream: Stream,
        /// Lines (and pieces of lines) dropped.
        lines: u64,
        /// Their bytes.
        bytes: u64,
    },
}

impl fmt::Display for OutputEvent {
    /// A line as text (invalid UTF-8 replaced), or a note of what was
    /// dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line { line, .. } => f.write_str(&String::from_utf8_lossy(line)),
            Self::Dropped {
                stream,
                lines,
                bytes,
            } => {
                let name = match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                };
                write!(
                    f,
                    "… {bytes} bytes dropped ({lines} lines of {name}; the reader fell behind)"
                )
            }
        }
    }
}

/// Cuts a byte stream into lines of at most `max` bytes.
#[derive(Debug)]
pub(crate) struct Lines {
    max: usize,
    /// The current line so far; never longer than `max`.
    partial: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            partial: Vec::new(),
        }
    }

    /// Hands every line `chunk` completes to `emit`; keeps the rest.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Vec<u8>)) {
        while !chunk.is_empty() {
            let room = self.max - self.partial.len();
            // One byte past the room: a `\n` right after a full line ends
            // it instead of making an empty line of its own.
            let window = &chunk[..chunk.len().min(room.saturating_add(1))];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                self.partial.extend_from_slice(&window[..i]);
                if self.partial.last() == Some(&b'\r') {
                    self.partial.pop();
                }
                emit(std::mem::take(&mut self.partial));
                chunk = &chunk[i + 1..];
            } else if window.len() > room {
                self.partial.extend_from_slice(&window[..room]);
                emit(std::mem::take(&mut self.partial));
                chunk = &chunk[room..];
            } else {
                self.partial.extend_from_slice(window);
                return;
            }
        }
    }

    /// Hands over the last line if it had no `\n`.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(Vec<u8>)) {
        if !self.partial.is_empty() {
            emit(std::mem::take(&mut self.partial));
        }
    }
}

/// Lines waiting for the caller, shared by the two readers and the
/// caller.
#[derive(Debug)]
pub(crate) struct Queue {
    max_bytes: usize,
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Debug)]
struct State {
    events: VecDeque<OutputEvent>,
    bytes: usize,
    /// Lines and bytes dropped per stream since the last hand-over.
    dropped: [(u64, u64); 2],
    /// Streams not at their end yet.
    open: usize,
}

impl State {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.dropped.iter().all(|d| d.0 == 0)
    }
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Queue {
    /// A queue for two open streams.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(State {
                events: VecDeque::new(),
                bytes: 0,
                dropped: [(0, 0); 2],
                open: 2,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A reader that panicked left a consistent queue: every change is
        // one push or one take.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line, or counts it as dropped when the queue is full or
    /// this stream already dropped a line since the last hand-over (so
    /// that the note of a stream's drops comes after its lines before).
    pub(crate) fn push(&self, stream: Stream, line: Vec<u8>) {
        let cost = line.len() + LINE_COST;
        let mut state = self.lock();
        let i = index(stream);
        if state.dropped[i].0 > 0 || state.bytes.saturating_add(cost) > self.max_bytes {
            let dropped = &mut state.dropped[i];
            dropped.0 += 1;
            dropped.1 += line.len() as u64;
            return;
        }
        state.bytes += cost;
        state.events.push_back(OutputEvent::Line { stream, line });
        drop(state);
        self.ready.notify_all();
    }

    /// Marks one stream as ended.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for something to hand over and takes all of
    /// it; `None` once both streams ended and everything was taken.
    pub(crate) fn take(&self, timeout: Duration) -> Option<Vec<OutputEvent>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.is_empty() && state.open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(Vec::new());
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if state.is_empty() {
            return None;
        }
        let mut events: Vec<OutputEvent> = state.events.drain(..).collect();
        state.bytes = 0;
        for stream in [Stream::Stdout, Stream::Stderr] {
            let (lines, bytes) = std::mem::take(&mut state.dropped[index(stream)]);
            if lines > 0 {
                events.push(OutputEvent::Dropped {
                    stream,
                    lines,
                    bytes,
                });
            }
        }
        Some(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut lines = Lines::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            lines.feed(chunk, &mut |l| out.push(l));
        }
        lines.finish(&mut |l| out.push(l));
        out
    }

    fn strs(lines: &[Vec<u8>]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_cut_at_newlines_across_chunks() {
        let out = split(100, &[b"one\ntw", b"o\r\n\nthr", b"ee"]);
        assert_eq!(strs(&out), ["one", "two", "", "three"]);
        assert!(split(100, &[b"", b""]).is_empty());
        assert_eq!(strs(&split(100, &[b"a\n"])), ["a"]);
    }

    #[test]
    fn long_lines_come_in_pieces_of_the_bound() {
        assert_eq!(
            strs(&split(4, &[b"abcdefghij\nk"])),
            ["abcd", "efgh", "ij", "k"]
        );
        // A line exactly the bound long, its newline in the same chunk or
        // the next one: no empty line after it.
        assert_eq!(strs(&split(4, &[b"abcd\nef\n"])), ["abcd", "ef"]);
        assert_eq!(strs(&split(4, &[b"ab", b"cd", b"\nef"])), ["abcd", "ef"]);
        assert_eq!(
            strs(&split(4, &[b"abcd", b"efgh", b"\n"])),
            ["abcd", "efgh"]
        );
        // Nothing kept grows past the bound, however the bytes come.
        let mut lines = Lines::new(8);
        for _ in 0..10_000 {
            lines.feed(&[b'x'; 3], &mut |l| assert_eq!(l.len(), 8));
            assert!(lines.partial.len() <= 8);
        }
    }

    #[test]
    fn any_bytes_in_any_chunks_give_the_same_bounded_lines_and_lose_nothing() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..2000 {
            let max = 1 + next(6) as usize;
            let input: Vec<u8> = (0..next(40))
                .map(|_| [b'a', b'b', b'\n'][next(3) as usize])
                .collect();
            let whole = split(max, &[&input]);
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(1 + next(rest.len() as u64) as usize);
                chunks.push(chunk);
                rest = after;
            }
            assert_eq!(split(max, &chunks), whole, "{input:?} in {chunks:?}");
            assert!(whole.iter().all(|l| l.len() <= max), "{input:?}");
            // Only the newlines are gone.
            let wanted: Vec<u8> = input.iter().copied().filter(|&b| b != b'\n').collect();
            assert_eq!(whole.concat(), wanted, "{input:?}");
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_then_notes_after_the_lines_before() {
        let queue = Queue::new(2 * (10 + LINE_COST));
        queue.push(Stream::Stdout, b"0123456789".to_vec());
        queue.push(Stream::Stderr, b"err".to_vec());
        queue.push(Stream::Stdout, b"abcdefghij".to_vec());
        // Would fit now, but its stream dropped a line before it.
        queue.push(Stream::Stdout, Vec::new());
        queue.push(Stream::Stderr, b"e2".to_vec());
        let events = queue.take(Duration::ZERO).unwrap();
        let text: Vec<String> = events.iter().map(ToString::to_string).collect();
        assert_eq!(text[..2], ["0123456789", "err"]);
        assert_eq!(
            events[2..],
            [
                OutputEvent::Dropped {
                    stream: Stream::Stdout,
                    lines: 2,
                    bytes: 10
                },
                OutputEvent::Dropped {
                    stream: Stream::Stderr,
                    lines: 1,
                    bytes: 2
                },
            ]
        );
        assert!(text[2].starts_with("… 10 bytes dropped"), "{}", text[2]);
        // Taken: room again, nothing dropped any more.
        queue.push(Stream::Stdout, b"again".to_vec());
        assert_eq!(queue.take(Duration::ZERO).unwrap().len(), 1);
        assert_eq!(queue.take(Duration::ZERO), Some(Vec::new()));
    }

    #[test]
    fn the_end_comes_after_the_last_line_and_waking_is_prompt() {
        let queue = std::sync::Arc::new(Queue::new(1 << 20));
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                queue.push(Stream::Stderr, b"late".to_vec());
                queue.close();
                queue.close();
            })
        };
        let mut got = Vec::new();
        while let Some(events) = queue.take(Duration::from_secs(10)) {
            got.extend(events);
        }
        writer.join().unwrap();
        assert_eq!(
            got,
            [OutputEvent::Line {
                stream: Stream::Stderr,
                line: b"late".to_vec()
            }]
        );
        assert_eq!(queue.take(Duration::from_secs(10)), None);
    }

    #[test]
    fn bounds_that_cannot_hold_a_line_are_refused() {
        assert!(LiveOutput::default().validate().is_ok());
        for (line, queued) in [(0, 1 << 20), (1000, 1000), (usize::MAX, usize::MAX)] {
            let live = LiveOutput {
                max_line_bytes: line,
                max_queued_bytes: queued,
            };
            assert!(
                matches!(live.validate(), Err(Error::InvalidSpec { .. })),
                "{live:?}"
            );
        }
    }
}
