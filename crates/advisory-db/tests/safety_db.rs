//! PyPI's `safety-db` (real version specifiers of ~1,400 packages) turned
//! into OSV ranges, imported, and matched for many versions; Python's
//! `packaging` is the oracle for PEP 440 validity, ordering and specifier
//! membership. Both come from `scripts/install-test-deps`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use advisory_db::{Database, Ecosystem, Limits, import};
use serde_json::{Value, json};

const ORACLE: &str = r#"
import json, sys
from packaging.specifiers import SpecifierSet, InvalidSpecifier
from packaging.version import Version, InvalidVersion
cases = json.load(open(sys.argv[1]))
out = {}
for name, case in cases.items():
    valid, final, parsed = {}, {}, {}
    for c in case["candidates"]:
        try:
            v = Version(c)
        except InvalidVersion:
            valid[c] = False
            continue
        valid[c] = True
        final[c] = not v.is_prerelease and v.local is None
        parsed[c] = v
    ordered = sorted(parsed, key=lambda c: parsed[c])
    ranks, rank = [], 0
    for i, c in enumerate(ordered):
        if i and parsed[c] != parsed[ordered[i - 1]]:
            rank += 1
        ranks.append([c, rank])
    members = {}
    for entry_id, specs in case["entries"].items():
        try:
            sets = [SpecifierSet(s) for s in specs]
        except InvalidSpecifier:
            continue
        members[entry_id] = [c for c in parsed if any(s.contains(parsed[c], prereleases=True) for s in sets)]
    out[name] = {"valid": valid, "final": final, "order": ranks, "members": members}
json.dump(out, open(sys.argv[2], "w"))
"#;

fn safety_db_file() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('safety_db').origin))",
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "PyPI's safety-db is not installed (scripts/install-test-deps installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("insecure_full.json")
}

/// One safety-db specifier (`>=1.0,<1.2`) as an OSV range or version list;
/// `None` for forms OSV cannot say exactly (`>`, `!=`, `~=`, wildcards).
fn to_osv(spec: &str) -> Option<(Option<Value>, Option<String>)> {
    let (mut lower, mut upper, mut exact) = (None, None, None);
    for clause in spec.split(',').map(str::trim) {
        let (op, version) = [">=", "<=", "==", "<"]
            .iter()
            .find_map(|op| clause.strip_prefix(op).map(|v| (*op, v.trim().to_owned())))?;
        if version.is_empty() || version.contains('*') || version.starts_with(['=', '<', '>']) {
            return None;
        }
        let slot = match op {
            ">=" => &mut lower,
            "==" => &mut exact,
            _ => &mut upper,
        };
        if slot.replace((op, version)).is_some() {
            return None;
        }
    }
    // `>=1.6,<1.6-beta-4` holds no version; as OSV events it would read
    // "from 1.6 on", so it becomes nothing.
    if let (Some((_, low)), Some((op, high))) = (&lower, &upper) {
        let empty = match Ecosystem::PyPI.compare(low, high) {
            Some(std::cmp::Ordering::Less) => false,
            Some(std::cmp::Ordering::Equal) => *op == "<",
            _ => true,
        };
        if empty {
            return Some((None, None));
        }
    }
    match (lower, upper, exact) {
        (None, None, Some((_, v))) => Some((None, Some(v))),
        (lower, upper, None) if lower.is_some() || upper.is_some() => {
            let mut events = vec![json!({"introduced": lower.map_or("0".to_owned(), |(_, v)| v)})];
            if let Some((op, v)) = upper {
                events.push(if op == "<" {
                    json!({"fixed": v})
                } else {
                    json!({"last_affected": v})
                });
            }
            Some((Some(json!({"type": "ECOSYSTEM", "events": events})), None))
        }
        _ => None,
    }
}

#[test]
fn matching_agrees_with_packaging_on_safety_db() {
    let db_json: BTreeMap<String, Value> =
        serde_json::from_slice(&std::fs::read(safety_db_file()).expect("read insecure_full.json"))
            .unwrap();

    let work = tempfile::tempdir().unwrap();
    let zip_path = work.path().join("PyPI").join("all.zip");
    std::fs::create_dir_all(zip_path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);

    // Per package: the oracle's input and the entries written as OSV.
    let mut cases = serde_json::Map::new();
    let mut converted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut skipped = 0;
    for (p, (name, entries)) in db_json
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .enumerate()
    {
        let mut specs_of = serde_json::Map::new();
        let mut boundaries = BTreeSet::new();
        for (i, entry) in entries.as_array().unwrap().iter().enumerate() {
            let specs: Vec<String> = entry["specs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            for spec in &specs {
                for clause in spec.split(',') {
                    boundaries.insert(
                        clause
                            .trim()
                            .trim_start_matches(['<', '>', '=', '!', '~'])
                            .trim()
                            .to_owned(),
                    );
                }
            }
            let osv: Option<Vec<_>> = specs.iter().map(|s| to_osv(s)).collect();
            let Some(osv) = osv else {
                skipped += 1;
                continue;
            };
            let id = format!("SAFETY-{p}-{i}");
            let ranges: Vec<Value> = osv.iter().filter_map(|(r, _)| r.clone()).collect();
            let versions: Vec<String> = osv.iter().filter_map(|(_, v)| v.clone()).collect();
            let aliases: Vec<&str> = [&entry["id"], &entry["cve"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            let record = json!({
                "id": id,
                "aliases": aliases,
                "affected": [{"package": {"ecosystem": "PyPI", "name": name}, "ranges": ranges, "versions": versions}],
            });
            zip.start_file(format!("{id}.json"), options).unwrap();
            zip.write_all(record.to_string().as_bytes()).unwrap();
            specs_of.insert(id.clone(), json!(specs));
            converted.entry(name.clone()).or_default().insert(id);
        }
        let mut candidates = BTreeSet::from(["0.0.1".to_owned(), "999.0".to_owned()]);
        for b in boundaries.iter().filter(|b| !b.is_empty()) {
            for c in [
                b.clone(),
                format!("{b}.post1"),
                format!("{b}.1"),
                format!("{b}rc1"),
                format!("{b}.dev0"),
                format!("{b}a1.dev2"),
                format!("{b}+local.7"),
                format!("{b}+Local-7a"),
                format!("1!{b}"),
                format!("v{b}"),
                format!("{b}-1"),
                format!("{b}_beta"),
            ] {
                candidates.insert(c);
            }
        }
        cases.insert(
            name.clone(),
            json!({"candidates": candidates, "entries": specs_of}),
        );
    }
    zip.finish().unwrap();
    assert!(
        converted.values().map(BTreeSet::len).sum::<usize>() > 2500,
        "most entries convert"
    );
    assert!(skipped < 200, "{skipped} entries not convertible");

    // The oracle.
    let input = work.path().join("cases.json");
    let output = work.path().join("oracle.json");
    std::fs::write(&input, Value::Object(cases).to_string()).unwrap();
    let run = Command::new("python3")
        .args(["-c", ORACLE])
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "the packaging oracle failed (scripts/install-test-deps installs packaging): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let oracle: BTreeMap<String, Value> =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();

    let store = work.path().join("store");
    let meta = import(zip_path.parent().unwrap(), &store, &Limits::default()).unwrap();
    assert!(meta.ecosystems["PyPI"].packages > 1000);
    let db = Database::open(&store).unwrap();

    let (mut validity, mut orderings, mut memberships) = (0, 0, 0);
    let mut mismatches = Vec::new();
    for (name, result) in &oracle {
        // Validity: our parser accepts exactly what packaging accepts.
        for (c, valid) in result["valid"].as_object().unwrap() {
            validity += 1;
            if Ecosystem::PyPI.is_valid(c) != valid.as_bool().unwrap() {
                mismatches.push(format!("{c}: packaging says valid={valid}"));
            }
        }
        // Ordering: every pair of neighbours in packaging's sort.
        let order = result["order"].as_array().unwrap();
        for pair in order.windows(2) {
            let (a, ra) = (pair[0][0].as_str().unwrap(), pair[0][1].as_u64().unwrap());
            let (b, rb) = (pair[1][0].as_str().unwrap(), pair[1][1].as_u64().unwrap());
            let want = if ra == rb {
                std::cmp::Ordering::Equal
            } else {
                std::cmp::Ordering::Less
            };
            orderings += 1;
            if Ecosystem::PyPI.compare(a, b) != Some(want) {
                mismatches.push(format!("{a} vs {b}: packaging says {want:?}"));
            }
        }
        // Membership, for final and post releases: OSV ranges and PEP 440
        // specifiers differ on purpose for pre-releases of a bound (`<5.4`
        // excludes 5.4rc1) and local versions at `<=`.
        let members = result["members"].as_object().unwrap();
        // One lookup per package, by a spelling PEP 503 makes equal.
        let entries = db
            .lookup("PyPI", &name.to_uppercase().replace('-', "_"))
            .unwrap();
        assert!(
            converted
                .get(name)
                .is_none_or(|c| c.is_empty() || !entries.is_empty()),
            "{name}"
        );
        for (c, is_final) in result["final"].as_object().unwrap() {
            if !is_final.as_bool().unwrap() {
                continue;
            }
            let expected: BTreeSet<String> = members
                .iter()
                .filter(|(id, hits)| {
                    converted[name].contains(*id)
                        && hits
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|h| h.as_str() == Some(c))
                })
                .map(|(id, _)| id.clone())
                .collect();
            let found: BTreeSet<String> = entries
                .iter()
                .filter(|e| e.affects(c).is_some() && members.contains_key(&e.advisory.id))
                .map(|e| e.advisory.id.clone())
                .collect();
            memberships += 1;
            if found != expected {
                mismatches.push(format!(
                    "{name} {c}: matched {found:?}, packaging says {expected:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreements with packaging, first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        validity > 30_000 && orderings > 20_000 && memberships > 10_000,
        "{validity} {orderings} {memberships}"
    );
}
