//! Blob sources for uploads: a registry (verified GET) and a layout
//! directory (file read through the same verifier), both reporting
//! progress as bytes flow.

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use oci_model::{Descriptor, Layout, Reference};
use registry_client::{BlobSource, ByteStream, Checkpoint, Client, VerifiedStream};
use tokio_util::io::ReaderStream;

use crate::Event;
use crate::copy::Progress;

/// Read size for layout files: large enough that per-chunk overhead is
/// negligible, small enough that eight parallel copies stay well under the
/// memory budget.
const READ_CHUNK: usize = 256 * 1024;

pub(crate) struct RegistryBlob<'a> {
    pub(crate) client: &'a Client,
    pub(crate) reference: &'a Reference,
    pub(crate) desc: Descriptor,
    pub(crate) progress: Option<Progress>,
}

impl BlobSource for RegistryBlob<'_> {
    fn open(
        &self,
    ) -> Pin<Box<dyn Future<Output = registry_client::Result<ByteStream>> + Send + '_>> {
        Box::pin(async move {
            let stream = self
                .client
                .get_blob(self.reference, &self.desc, Checkpoint::default())
                .await?;
            Ok(with_progress(
                Box::pin(stream),
                &self.desc,
                self.progress.clone(),
            ))
        })
    }
}

pub(crate) struct LayoutBlob<'a> {
    pub(crate) layout: &'a Layout,
    pub(crate) desc: Descriptor,
    pub(crate) progress: Option<Progress>,
}

impl BlobSource for LayoutBlob<'_> {
    fn open(
        &self,
    ) -> Pin<Box<dyn Future<Output = registry_client::Result<ByteStream>> + Send + '_>> {
        Box::pin(async move {
            let path = self.layout.blob_path(&self.desc.digest);
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let raw = ReaderStream::with_capacity(file, READ_CHUNK)
                .map(|r| r.map_err(registry_client::Error::Io));
            // A layout is untrusted too: a blob edited on disk must not
            // reach a registry under the old digest.
            let verified = VerifiedStream::new(
                Box::pin(raw),
                self.desc.clone(),
                Checkpoint::default(),
                format!("oci:{}", self.layout.root().display()),
                format!("read blob {}", self.desc.digest),
            );
            Ok(with_progress(
                Box::pin(verified),
                &self.desc,
                self.progress.clone(),
            ))
        })
    }
}

pub(crate) fn with_progress(
    stream: ByteStream,
    desc: &Descriptor,
    progress: Option<Progress>,
) -> ByteStream {
    let Some(progress) = progress else {
        return stream;
    };
    let digest = desc.digest.clone();
    Box::pin(stream.inspect(move |item| {
        if let Ok(bytes) = item {
            progress(Event::BlobProgress {
                digest: digest.clone(),
                bytes: bytes.len() as u64,
            });
        }
    }))
}
