//! Content-addressed on-disk store of image blobs and unpacked layers with
//! LRU eviction and single flight.

mod fetch;

pub use fetch::{BlobStream, Fetch};
