//! Prints the `oci:DIR:TAG` reference of a cached base image, building it
//! first if needed, so that shell scripts (benchmarks, CI) can use the
//! same bases as the tests.
//!
//! ```text
//! cargo run -q --release -p testkit --example base-image -- python
//! cargo run -q --release -p testkit --example base-image -- busybox
//! ```

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports on standard output and error"
)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let which = std::env::args().nth(1).unwrap_or_default();
    let image = match which.as_str() {
        "python" => testkit::python_base(),
        "busybox" => testkit::busybox_base(),
        _ => {
            eprintln!("usage: base-image python|busybox");
            return ExitCode::from(2);
        }
    };
    match image {
        Ok(image) => {
            println!("{}", image.oci_ref());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("base-image {which}: {e}");
            ExitCode::FAILURE
        }
    }
}
