//! The dependency closure of the requested packages, as apt computes it
//! for `apt-get install --no-install-recommends`, with two differences
//! that suit an image nobody runs dpkg in:
//!
//! - **Essential and priority are not consulted.** apt assumes the
//!   Essential set (coreutils, dpkg, bash, perl-base...) is already
//!   installed, so packages rarely name it; here only what `Depends` and
//!   `Pre-Depends` name is installed. An image that needs a tool from the
//!   Essential set lists it.
//! - **Excluded packages** satisfy a dependency without being installed:
//!   [`DEFAULT_EXCLUDED`] are those only maintainer scripts or
//!   documentation use (dpkg, debconf, install-info, perl-base, awk, the
//!   gcc-12-base copyright package), since no maintainer script runs.
//!
//! The candidate of a package is its highest version in the index (apt's
//! default with no pinning); a request `name=version` pins one. A group of
//! alternatives is satisfied by a package already chosen when one is, else
//! by its first alternative that can be: a real package (its highest
//! version that meets the constraint, so that an exact `=` dependency of a
//! pinned package is followed), or a virtual package with exactly one
//! provider. Recommends and Suggests are not followed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::control::{Relation, parse_relations};
use crate::index::{Index, Package};
use crate::{Error, Result};

/// Packages that satisfy dependencies without being installed (see the
/// module documentation): what only maintainer scripts or documentation
/// need. `gcc-12-base` ships nothing but the compiler's copyright file;
/// `awk` (virtual) is what base-files' scripts run.
pub const DEFAULT_EXCLUDED: &[&str] = &[
    "awk",
    "debconf",
    "dpkg",
    "gcc-12-base",
    "install-info",
    "perl-base",
];

/// One package chosen for the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The exact version from the index.
    pub package: Package,
    /// The package whose dependency pulled it in; `None` when requested.
    pub required_by: Option<String>,
}

/// The closure: every package to install, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The packages, by name.
    pub packages: Vec<Selected>,
    /// Excluded packages some dependency named (satisfied, not installed).
    pub excluded: Vec<String>,
}

/// Resolves `requested` (`name` or `name=version`) over `index`, with
/// `excluded` satisfied without install (a requested package is never
/// excluded).
///
/// ```
/// let mut index = debian_base::Index::new("amd64");
/// index.add(
///     "Package: app\nVersion: 1\nArchitecture: all\nDepends: libc6 (>= 2.30) | musl, dpkg\n\n\
///      Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\n"
///         .as_bytes(),
///     "test",
/// )?;
/// let r = debian_base::resolve(&index, &["app".into()], &["dpkg".into()])?;
/// let names: Vec<_> = r.packages.iter().map(|s| s.package.name.as_str()).collect();
/// assert_eq!(names, ["app", "libc6"]);
/// assert_eq!(r.excluded, ["dpkg"]);
/// # Ok::<(), debian_base::Error>(())
/// ```
pub fn resolve(index: &Index, requested: &[String], excluded: &[String]) -> Result<Resolution> {
    let mut chosen: BTreeMap<String, Selected> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for request in requested {
        let (name, version) = match request.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (request.trim(), None),
        };
        let package = match version {
            Some(v) => index.versions(name).iter().find(|p| p.version == v),
            None => index.candidate(name),
        }
        .ok_or_else(|| unknown(index, name, version))?;
        if let Some(other) = chosen.get(name)
            && other.package.version != package.version
        {
            return Err(Error::Conflict {
                package: name.to_owned(),
                versions: vec![other.package.version.clone(), package.version.clone()],
            });
        }
        chosen.insert(
            name.to_owned(),
            Selected {
                package: package.clone(),
                required_by: None,
            },
        );
        queue.push_back(name.to_owned());
    }
    let excluded: BTreeSet<&str> = excluded
        .iter()
        .map(String::as_str)
        .filter(|e| !chosen.contains_key(*e))
        .collect();
    let mut used_exclusions = BTreeSet::new();

    while let Some(name) = queue.pop_front() {
        let package = chosen[&name].package.clone();
        for field in [&package.pre_depends, &package.depends] {
            let groups = parse_relations(field).map_err(|e| Error::BadDependency {
                package: format!("{}={}", package.name, package.version),
                reason: e.to_string(),
            })?;
            'group: for group in groups {
                if group.iter().any(|alt| satisfied(index, &chosen, alt)) {
                    continue;
                }
                if let Some(alt) = group.iter().find(|a| excluded.contains(a.name.as_str())) {
                    used_exclusions.insert(alt.name.clone());
                    continue;
                }
                for alt in &group {
                    if let Some(pick) = choose(index, alt, &name)? {
                        if let Some(other) = chosen.get(&pick.name) {
                            // Chosen already, at a version this group rejects.
                            return Err(Error::Unsatisfiable {
                                package: format!("{}={}", package.name, package.version),
                                dependency: format_group(&group),
                                reason: format!(
                                    "{} {} is chosen already",
                                    other.package.name, other.package.version
                                ),
                            });
                        }
                        chosen.insert(
                            pick.name.clone(),
                            Selected {
                                package: pick.clone(),
                                required_by: Some(name.clone()),
                            },
                        );
                        queue.push_back(pick.name.clone());
                        continue 'group;
                    }
                }
                return Err(Error::Unsatisfiable {
                    package: format!("{}={}", package.name, package.version),
                    dependency: format_group(&group),
                    reason: "no package in the index satisfies it".into(),
                });
            }
        }
    }
    Ok(Resolution {
        packages: chosen.into_values().collect(),
        excluded: used_exclusions.into_iter().collect(),
    })
}

fn unknown(index: &Index, name: &str, version: Option<&str>) -> Error {
    let known: Vec<String> = index
        .versions(name)
        .iter()
        .map(|p| p.version.clone())
        .collect();
    Error::UnknownPackage {
        package: name.to_owned(),
        version: version.map(str::to_owned),
        arch: index.arch().to_owned(),
        known,
    }
}

fn format_group(group: &[Relation]) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn version_ok(relation: &Relation, version: &str) -> bool {
    relation
        .version
        .as_ref()
        .is_none_or(|(op, wanted)| op.allows(version, wanted))
}

/// Whether a package already chosen satisfies `relation`, itself or
/// through `Provides`.
fn satisfied(index: &Index, chosen: &BTreeMap<String, Selected>, relation: &Relation) -> bool {
    if chosen
        .get(&relation.name)
        .is_some_and(|s| version_ok(relation, &s.package.version))
    {
        return true;
    }
    index
        .providers(&relation.name)
        .iter()
        .any(|(provider, version, provided)| {
            chosen
                .get(provider)
                .is_some_and(|s| &s.package.version == version)
                && provided_ok(relation, provided.as_deref())
        })
}

/// A versioned dependency is met by `Provides` only with a version.
fn provided_ok(relation: &Relation, provided: Option<&str>) -> bool {
    match (&relation.version, provided) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(_), Some(v)) => version_ok(relation, v),
    }
}

/// The package that would satisfy `relation`: the real package's highest
/// version that does, else the single provider's candidate.
fn choose<'a>(
    index: &'a Index,
    relation: &Relation,
    wanted_by: &str,
) -> Result<Option<&'a Package>> {
    // The candidate if it fits, else the highest version that does.
    if let Some(fit) = index
        .versions(&relation.name)
        .iter()
        .filter(|p| version_ok(relation, &p.version))
        .max_by(|a, b| crate::compare_versions(&a.version, &b.version))
    {
        return Ok(Some(fit));
    }
    let mut providers: Vec<&Package> = index
        .providers(&relation.name)
        .iter()
        .filter(|(_, _, provided)| provided_ok(relation, provided.as_deref()))
        .filter_map(|(p, version, _)| index.candidate(p).filter(|c| &c.version == version))
        .collect();
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    providers.dedup_by(|a, b| a.name == b.name);
    match providers.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(Error::AmbiguousVirtual {
            virtual_package: relation.name.clone(),
            wanted_by: wanted_by.to_owned(),
            providers: many.iter().map(|p| p.name.clone()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: python3.11-minimal
Version: 3.11.2-6+deb12u6
Architecture: amd64
Pre-Depends: libc6 (>= 2.36)
Depends: libpython3.11-minimal (= 3.11.2-6+deb12u6), libexpat1 (>= 2.1~beta3), zlib1g (>= 1:1.2.0)
Recommends: python3.11

Package: python3.11-minimal
Version: 3.11.2-6
Architecture: amd64
Depends: libpython3.11-minimal (= 3.11.2-6)

Package: libpython3.11-minimal
Version: 3.11.2-6+deb12u6
Architecture: amd64
Depends: libc6 (>= 2.14), libssl3 (>= 3.0.0)

Package: libpython3.11-minimal
Version: 3.11.2-6
Architecture: amd64
Depends: libc6 (>= 2.14)

Package: libc6
Version: 2.36-9+deb12u10
Architecture: amd64
Depends: libgcc-s1

Package: libgcc-s1
Version: 12.2.0-14+deb12u1
Architecture: amd64
Depends: gcc-12-base (= 12.2.0-14+deb12u1), libc6 (>= 2.35)

Package: gcc-12-base
Version: 12.2.0-14+deb12u1
Architecture: amd64

Package: libexpat1
Version: 2.5.0-1+deb12u1
Architecture: amd64
Depends: libc6 (>= 2.25)

Package: zlib1g
Version: 1:1.2.13.dfsg-1
Architecture: amd64
Depends: libc6 (>= 2.14)

Package: libssl3
Version: 3.0.17-1~deb12u2
Architecture: amd64
Depends: libc6 (>= 2.34)

Package: python3-numpy
Version: 1:1.24.2-1+deb12u1
Architecture: amd64
Depends: libblas3 | libblas.so.3, python3:any, python3-numpy-abi (>= 1)
Provides: python3-numpy-abi9

Package: libopenblas0
Version: 0.3.21
Architecture: amd64
Provides: libblas.so.3

Package: libblis4
Version: 0.9.0
Architecture: amd64
Provides: libblas.so.3

Package: python3
Version: 3.11.2-1+b1
Architecture: amd64

Package: abi-provider
Version: 1
Architecture: all
Provides: python3-numpy-abi (= 2)

Package: armonly
Version: 1
Architecture: arm64
";

    fn index() -> Index {
        let mut index = Index::new("amd64");
        index.add(INDEX.as_bytes(), "test").unwrap();
        index
    }

    fn names(r: &Resolution) -> Vec<String> {
        r.packages
            .iter()
            .map(|s| format!("{}={}", s.package.name, s.package.version))
            .collect()
    }

    fn excluded() -> Vec<String> {
        DEFAULT_EXCLUDED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn closure_of_candidates_with_exclusions() {
        let r = resolve(&index(), &["python3.11-minimal".into()], &excluded()).unwrap();
        assert_eq!(
            names(&r),
            [
                "libc6=2.36-9+deb12u10",
                "libexpat1=2.5.0-1+deb12u1",
                "libgcc-s1=12.2.0-14+deb12u1",
                "libpython3.11-minimal=3.11.2-6+deb12u6",
                "libssl3=3.0.17-1~deb12u2",
                "python3.11-minimal=3.11.2-6+deb12u6",
                "zlib1g=1:1.2.13.dfsg-1",
            ]
        );
        assert_eq!(r.excluded, ["gcc-12-base"]);
        let libc = r
            .packages
            .iter()
            .find(|s| s.package.name == "libc6")
            .unwrap();
        assert_eq!(libc.required_by.as_deref(), Some("python3.11-minimal"));
        // Without exclusions the copyright package comes too.
        let r = resolve(&index(), &["python3.11-minimal".into()], &[]).unwrap();
        assert!(names(&r).iter().any(|n| n.starts_with("gcc-12-base=")));
    }

    #[test]
    fn a_pinned_version_pins_its_dependencies() {
        let r = resolve(&index(), &["python3.11-minimal=3.11.2-6".into()], &[]).unwrap();
        assert!(names(&r).contains(&"libpython3.11-minimal=3.11.2-6".to_owned()));
        // A pin the dependency cannot meet, because the other version is
        // chosen already.
        let err = resolve(
            &index(),
            &[
                "libpython3.11-minimal=3.11.2-6".into(),
                "python3.11-minimal".into(),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Unsatisfiable { dependency, .. } if dependency.starts_with("libpython3.11-minimal (= 3.11.2-6+deb12u6)")),
            "{err}"
        );
    }

    #[test]
    fn alternatives_and_virtual_packages() {
        let mut idx = index();
        // Two providers of libblas.so.3 and no libblas3: ambiguous.
        let err = resolve(&idx, &["python3-numpy".into()], &[]).unwrap_err();
        assert!(
            matches!(&err, Error::AmbiguousVirtual { virtual_package, providers, .. }
                if virtual_package == "libblas.so.3" && providers == &["libblis4", "libopenblas0"]),
            "{err}"
        );
        // Requesting one provider settles it.
        let r = resolve(&idx, &["python3-numpy".into(), "libopenblas0".into()], &[]).unwrap();
        let n = names(&r);
        assert!(n.contains(&"libopenblas0=0.3.21".to_owned()), "{n:?}");
        assert!(!n.iter().any(|n| n.starts_with("libblis4")), "{n:?}");
        // A versioned dependency on a virtual package: the provider with
        // a version.
        assert!(n.contains(&"abi-provider=1".to_owned()), "{n:?}");
        // A real first alternative wins over providers.
        idx.add(
            "Package: libblas3\nVersion: 3.11.0-2\nArchitecture: amd64\n".as_bytes(),
            "more",
        )
        .unwrap();
        let r = resolve(&idx, &["python3-numpy".into()], &[]).unwrap();
        assert!(names(&r).contains(&"libblas3=3.11.0-2".to_owned()));
    }

    #[test]
    fn unknown_and_unsatisfiable_are_named() {
        let err = resolve(&index(), &["no-such-package".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("no-such-package"), "{err}");
        let err = resolve(&index(), &["armonly".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("amd64"), "{err}");
        let err = resolve(&index(), &["libc6=1.0".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("2.36-9+deb12u10"), "{err}");
        let mut idx = index();
        idx.add(
            "Package: broken\nVersion: 1\nArchitecture: all\nDepends: libc6 (>= 9), nothing | none\n"
                .as_bytes(),
            "more",
        )
        .unwrap();
        let err = resolve(&idx, &["broken".into()], &[]).unwrap_err();
        assert!(
            matches!(&err, Error::Unsatisfiable { package, dependency, .. }
                if package == "broken=1" && dependency == "libc6 (>= 9)"),
            "{err}"
        );
        idx.add(
            "Package: garbled\nVersion: 1\nArchitecture: all\nDepends: libc6 (>= \n".as_bytes(),
            "more",
        )
        .unwrap();
        let err = resolve(&idx, &["garbled".into()], &[]).unwrap_err();
        assert!(matches!(err, Error::BadDependency { .. }), "{err}");
    }
}
