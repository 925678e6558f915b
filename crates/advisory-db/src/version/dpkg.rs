//! Debian version ordering, as `dpkg --compare-versions` orders versions:
//! `debian-base`'s, which resolves packages by the same rules (and tests
//! them against dpkg's cases).

pub(crate) use debian_base::compare_versions as compare;
