//! Health probes for a server under test: one plain HTTP/1.1 `GET` to
//! `http://127.0.0.1:PORT/PATH`, bounded in time (connect, send and read
//! together) and in bytes (the status line only, at most
//! [`MAX_STATUS_LINE`] bytes, parsed strictly), optionally from inside
//! another network namespace, such as a sandboxed container's.
//!
//! The server is not trusted: it may never answer, answer gigabytes, or
//! answer garbage; each is a [`Probe`] value, never a hang or an
//! allocation it controls.
//!
//! ```no_run
//! use std::time::Duration;
//! use http_probe::{Probe, Target};
//!
//! let target = Target::new(8000, "/health")?;
//! match http_probe::probe(&target, Duration::from_secs(2)) {
//!     probe if probe.is_ok() => println!("healthy"),
//!     Probe::Refused => println!("not listening yet"),
//!     other => println!("{target}: {other}"),
//! }
//! # Ok::<(), http_probe::Error>(())
//! ```

mod probe;
mod status;

pub use probe::{Error, MAX_PATH, Probe, Target, probe, probe_in};
pub use status::{MAX_STATUS_LINE, StatusLine, StatusLineError, Version, parse_status_line};
