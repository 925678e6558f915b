//! `cvss4_base_score` against the `cvss` PyPI package's `CVSS4` (Red Hat's
//! port of FIRST's reference calculator), installed by
//! `scripts/install-test-deps`: every combination of the eleven base
//! metrics, random vectors with threat, environmental and supplemental
//! metrics in random order, and random corruptions of them, which both
//! must refuse alike. Zero disagreements allowed.

use std::fmt::Write as _;
use std::process::Command;

use advisory_db::cvss4_base_score;

const ORACLE: &str = r#"
import sys
from cvss import CVSS4
from cvss.exceptions import CVSS4Error
out = []
for line in open(sys.argv[1]).read().split("\n")[:-1]:
    try:
        out.append(repr(CVSS4(line).base_score))
    except CVSS4Error:
        out.append("refused")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
"#;

const BASE: [(&str, &[&str]); 11] = [
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("AT", &["N", "P"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "P", "A"]),
    ("VC", &["H", "L", "N"]),
    ("VI", &["H", "L", "N"]),
    ("VA", &["H", "L", "N"]),
    ("SC", &["H", "L", "N"]),
    ("SI", &["H", "L", "N"]),
    ("SA", &["H", "L", "N"]),
];

const OPTIONAL: [(&str, &[&str]); 21] = [
    ("E", &["X", "A", "P", "U"]),
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MAT", &["X", "N", "P"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "P", "A"]),
    ("MVC", &["X", "H", "L", "N"]),
    ("MVI", &["X", "H", "L", "N"]),
    ("MVA", &["X", "H", "L", "N"]),
    ("MSC", &["X", "H", "L", "N"]),
    ("MSI", &["X", "S", "H", "L", "N"]),
    ("MSA", &["X", "S", "H", "L", "N"]),
    ("S", &["X", "N", "P"]),
    ("AU", &["X", "N", "Y"]),
    ("R", &["X", "A", "U", "I"]),
    ("V", &["X", "D", "C"]),
    ("RE", &["X", "L", "M", "H"]),
    ("U", &["X", "Clear", "Green", "Amber", "Red"]),
];

/// SplitMix64: a fixed seed makes every run test the same vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every combination of the base metrics (104,976 vectors).
fn all_base_vectors() -> Vec<String> {
    let total: usize = BASE.iter().map(|(_, v)| v.len()).product();
    (0..total)
        .map(|mut n| {
            let mut v = String::from("CVSS:4.0");
            for (name, values) in BASE {
                write!(v, "/{name}:{}", values[n % values.len()]).unwrap();
                n /= values.len();
            }
            v
        })
        .collect()
}

/// Base metrics plus a random subset of the others, fields shuffled.
fn random_full_vector(rng: &mut Rng) -> String {
    let mut fields: Vec<String> = BASE
        .iter()
        .map(|(name, values)| format!("{name}:{}", values[rng.below(values.len())]))
        .collect();
    for (name, values) in OPTIONAL {
        if rng.below(3) != 0 {
            fields.push(format!("{name}:{}", values[rng.below(values.len())]));
        }
    }
    // Mostly in the specification's order, sometimes shuffled (both
    // implementations accept any order).
    if rng.below(4) == 0 {
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.below(i + 1));
        }
    }
    format!("CVSS:4.0/{}", fields.join("/"))
}

/// A valid vector damaged the way a hostile or sloppy record might.
fn corrupt(rng: &mut Rng, vector: &str) -> String {
    let mut fields: Vec<String> = vector.split('/').map(str::to_owned).collect();
    let i = 1 + rng.below(fields.len() - 1);
    match rng.below(9) {
        0 => {
            fields.remove(i);
        }
        1 => {
            let dup = fields[i].clone();
            fields.push(dup);
        }
        2 => fields[i].push('X'),
        3 => fields[i] = fields[i].to_ascii_lowercase(),
        4 => fields.insert(i, String::new()),
        5 => fields[i] = fields[i].replace(':', ""),
        6 => fields[0] = ["CVSS:3.1", "CVSS:4.1", "cvss:4.0", ""][rng.below(4)].into(),
        7 => fields[i].push_str(":N"),
        _ => fields.push(["ZZ:1", "MS:X", "M:X", "E:Z"][rng.below(4)].into()),
    }
    let mut out = fields.join("/");
    if rng.below(20) == 0 {
        out.push('/');
    }
    out
}

fn oracle(vectors: &[String]) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("vectors.txt");
    let output = work.path().join("scores.txt");
    let mut text = vectors.join("\n");
    text.push('\n');
    std::fs::write(&input, text).unwrap();
    let run = Command::new("python3")
        .args(["-c", ORACLE])
        .arg(&input)
        .arg(&output)
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "the cvss oracle failed (scripts/install-test-deps installs PyPI's cvss): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let scores: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(scores.len(), vectors.len(), "one oracle answer per vector");
    scores
}

#[test]
fn agrees_with_the_cvss_package() {
    let mut rng = Rng(0x00c0_ffee_c555_0004);
    let mut vectors = all_base_vectors();
    let base = vectors.len();
    for _ in 0..20_000 {
        vectors.push(random_full_vector(&mut rng));
    }
    for _ in 0..5_000 {
        let v = random_full_vector(&mut rng);
        vectors.push(corrupt(&mut rng, &v));
    }
    assert!(vectors.iter().all(|v| !v.contains('\n')));

    let expected = oracle(&vectors);
    let mut disagreements = Vec::new();
    let (mut scored, mut refused) = (0, 0);
    for (vector, want) in vectors.iter().zip(&expected) {
        let got = cvss4_base_score(vector);
        let agree = match (&got, want.as_str()) {
            (Err(_), "refused") => {
                refused += 1;
                true
            }
            (Ok(score), want) => {
                scored += 1;
                want.parse::<f64>() == Ok(*score)
            }
            _ => false,
        };
        if !agree {
            disagreements.push(format!("{vector}: ours {got:?}, cvss {want}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements, first: {:#?}",
        disagreements.len(),
        &disagreements[..disagreements.len().min(20)]
    );
    // The corpus exercised both outcomes, and scores across the range.
    assert!(scored >= base + 20_000, "{scored} scored");
    assert!(refused > 3_000, "{refused} refused");
    let distinct: std::collections::BTreeSet<String> = expected
        .iter()
        .filter(|s| *s != "refused")
        .cloned()
        .collect();
    assert!(distinct.len() >= 95, "{} distinct scores", distinct.len());
}
