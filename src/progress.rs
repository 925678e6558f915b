//! The copy progress bar shown on a terminal: bytes of blobs done out of
//! bytes of blobs seen so far.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use oci_push::{BlobHow, Event, Progress};

pub(crate) struct Bar(ProgressBar);

impl Bar {
    pub(crate) fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {msg}",
            )
            .expect("a valid template"),
        );
        Self(bar)
    }

    pub(crate) fn sink(&self) -> Progress {
        let bar = self.0.clone();
        Arc::new(move |event| match event {
            Event::BlobStarted { size, .. } => bar.inc_length(size),
            Event::BlobProgress { bytes, .. } => bar.inc(bytes),
            // Skipped blobs count as done; copied ones were counted as
            // their bytes flowed.
            Event::BlobDone { size, how, .. } if how != BlobHow::Copied => bar.inc(size),
            Event::ManifestWritten { digest } => {
                bar.set_message(format!("manifest {}", digest.short(12)))
            }
            _ => {}
        })
    }

    pub(crate) fn finish(self) {
        self.0.finish_and_clear();
    }
}
