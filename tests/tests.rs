//! End-to-end tests of hoist against real registries on loopback: the CLI
//! contract, interop with skopeo and umoci, auth, faults and hostile input.

mod e2e;
