//! Users and groups as Docker resolves them: `USER` and `--chown` take
//! `USER[:GROUP]`, each a number or a name, and names are looked up in the
//! stage's own `/etc/passwd` and `/etc/group`, read through the merged view
//! of its layers (never the host's).

use std::io::Read;
use std::path::Path;

use super::union::{Entry, Union};

/// The most bytes of `/etc/passwd` or `/etc/group` read.
const MAX_FILE: u64 = 4 << 20;

/// One side of `USER[:GROUP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Id(u32),
    Name(String),
}

fn part(text: &str) -> Part {
    match text.parse() {
        Ok(id) => Part::Id(id),
        Err(_) => Part::Name(text.to_owned()),
    }
}

/// What a user specification leaves out when it names no group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NoGroup {
    /// The user's primary group from `/etc/passwd` (0 when the user is a
    /// number without an entry): how `USER` runs a process.
    Primary,
    /// The user's own number: how `--chown` sets a group.
    SameAsUser,
}

/// `USER[:GROUP]` split into its parts; `None` when it needs no lookup.
fn split(spec: &str) -> (Part, Option<Part>) {
    match spec.split_once(':') {
        Some((u, g)) => (part(u), Some(part(g))),
        None => (part(spec), None),
    }
}

/// Whether resolving `spec` needs the stage's files.
pub(super) fn needs_files(spec: &str, no_group: NoGroup) -> bool {
    match split(spec) {
        (Part::Name(_), _) | (_, Some(Part::Name(_))) => true,
        (Part::Id(_), Some(Part::Id(_))) => false,
        (Part::Id(_), None) => no_group == NoGroup::Primary,
    }
}

/// Resolves `spec` against the stage's `passwd` and `group` texts.
pub(super) fn resolve(
    spec: &str,
    passwd: &str,
    group: &str,
    no_group: NoGroup,
) -> Result<(u32, u32), String> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (user, grp) = split(spec);
    // name:password:uid:gid:...
    let users = || {
        passwd.lines().filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_owned(),
                f.get(2)?.parse::<u32>().ok()?,
                f.get(3)?.parse::<u32>().ok()?,
            ))
        })
    };
    let (uid, primary) = match &user {
        Part::Id(id) => (*id, users().find(|u| u.1 == *id).map_or(0, |u| u.2)),
        Part::Name(name) => {
            let found = users().find(|u| u.0 == name);
            let (_, uid, gid) =
                found.ok_or_else(|| format!("no user {name:?} in the stage's /etc/passwd"))?;
            (uid, gid)
        }
    };
    let gid = match grp {
        Some(Part::Id(id)) => id,
        Some(Part::Name(name)) => group
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name.as_str())).then(|| f.get(2)?.parse::<u32>().ok())?
            })
            .ok_or_else(|| format!("no group {name:?} in the stage's /etc/group"))?,
        None => match no_group {
            NoGroup::Primary => primary,
            NoGroup::SameAsUser => uid,
        },
    };
    Ok((uid, gid))
}

/// The text of the merged file `rel` of `union` (empty when missing),
/// read with a bound; a link there counts as missing, as it would lead
/// out of the stage's files.
pub(super) fn read_merged(union: &Union, rel: &str) -> Result<String, String> {
    match union.lookup(Path::new(rel)) {
        Some(Entry::File(host)) => {
            let file = std::fs::File::open(&host).map_err(|e| format!("/{rel}: {e}"))?;
            let mut text = String::new();
            file.take(MAX_FILE)
                .read_to_string(&mut text)
                .map_err(|e| format!("/{rel}: {e}"))?;
            Ok(text)
        }
        _ => Ok(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbroken\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";

    #[test]
    fn users_resolve_as_docker_resolves_them() {
        let r = |spec, no_group| resolve(spec, PASSWD, GROUP, no_group);
        use NoGroup::*;
        assert_eq!(r("", Primary), Ok((0, 0)));
        assert_eq!(r("app", Primary), Ok((1000, 1001)));
        assert_eq!(r("app", SameAsUser), Ok((1000, 1000)));
        assert_eq!(r("app:staff", Primary), Ok((1000, 50)));
        assert_eq!(r("1000", Primary), Ok((1000, 1001)));
        assert_eq!(r("1000", SameAsUser), Ok((1000, 1000)));
        assert_eq!(r("4242", Primary), Ok((4242, 0)));
        assert_eq!(r("7:8", Primary), Ok((7, 8)));
        assert_eq!(r("root:50", Primary), Ok((0, 50)));
        assert!(
            r("nobody", Primary)
                .unwrap_err()
                .contains("no user \"nobody\"")
        );
        assert!(
            r("app:wheel", Primary)
                .unwrap_err()
                .contains("no group \"wheel\"")
        );
        assert!(!needs_files("7:8", Primary));
        assert!(!needs_files("7", SameAsUser));
        assert!(needs_files("7", Primary));
        assert!(needs_files("7:staff", SameAsUser));
    }
}
