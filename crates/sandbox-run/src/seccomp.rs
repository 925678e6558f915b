//! The default seccomp profile.
//!
//! `seccomp.json` is the single source of truth: Docker's default profile as
//! it resolves for a container without capabilities (its plain allow-list,
//! `socket` except `AF_VSOCK`, the harmless `personality` values, `clone`
//! without namespace flags, `clone3` answering `ENOSYS` so that libc falls
//! back to `clone`), written in the runtime spec's `LinuxSeccomp` format.
//! Everything else fails with `EPERM`.
//!
//! The filter covers the host's native ABI only: compiling it for the
//! compatibility ABIs too (x86 and x32 beside x86_64) multiplies libseccomp's
//! work and made every container start about 50 ms slower. A syscall made
//! through another ABI (a 32-bit binary) kills the calling thread instead.

use serde_json::Value;

const PROFILE: &str = include_str!("seccomp.json");

#[cfg(target_arch = "x86_64")]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64"];
#[cfg(target_arch = "aarch64")]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_AARCH64"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_NATIVE"];

/// The default profile as the `linux.seccomp` value of a runtime spec.
pub(crate) fn default_profile() -> Value {
    let mut profile: Value = serde_json::from_str(PROFILE).expect("seccomp.json is valid JSON");
    profile["architectures"] = ARCHITECTURES.iter().map(|a| Value::from(*a)).collect();
    profile
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

    use super::*;

    fn allowed(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn profile_is_a_runtime_spec_seccomp_that_denies_by_default() {
        let profile: LinuxSeccomp = serde_json::from_value(default_profile()).unwrap();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(1));
        assert!(!profile.architectures().as_ref().unwrap().is_empty());
        let allowed = allowed(&profile);
        for name in ["read", "write", "execve", "openat", "exit_group", "wait4"] {
            assert!(allowed.iter().any(|n| n == name), "{name} must be allowed");
        }
        // What Docker grants only with capabilities that a sandbox never has.
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "kexec_load",
            "init_module",
            "reboot",
            "clone",
        ] {
            assert!(
                !allowed.iter().any(|n| n == name),
                "{name} must not be allowed unconditionally"
            );
        }
    }
}
