//! Debian version ordering, as `dpkg --compare-versions` orders versions:
//! `debian-base`'s, which resolves packages by the same rules.

pub(crate) use debian_base::compare_versions as compare;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn orders_as_dpkg_does() {
        // Each pair: a < b (checked both ways).
        for (a, b) in [
            ("1.0", "1.1"),
            ("1.9", "1.10"),
            ("1.0~rc1", "1.0"),
            ("1.0~~", "1.0~"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0+"),
            ("1.0-1", "1.0-2"),
            ("1.0-9", "1.0-10"),
            ("9.9", "1:0.1"),
            ("2.36-9+deb12u3", "2.36-9+deb12u10"),
            ("2.36-9", "2.36-9+deb12u1"),
            ("1.24.2-1", "1:1.24.2-1+deb12u1"),
            ("0.9", "1.0-0"),
        ] {
            assert_eq!(compare(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare(b, a), Ordering::Greater, "{b} > {a}");
        }
        for (a, b) in [("0:1.0", "1.0"), ("1.00", "1.0"), ("1.0-0", "1.0")] {
            assert_eq!(compare(a, b), Ordering::Equal, "{a} = {b}");
        }
    }
}
