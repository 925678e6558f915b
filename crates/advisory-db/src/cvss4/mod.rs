//! CVSS v4.0 scoring, step for step as FIRST's reference calculator
//! (`cvss_score.js`) and its Python port (the `cvss` package's `CVSS4`,
//! whose rounding this follows) compute it: the vector's macro vector
//! (EQ1..EQ6) gives a score from the table in `table.rs`, lowered by the
//! mean of its proportional severity distances to the next lower macro
//! vectors, rounded half up to one decimal.
//!
//! The floating-point operations are done in the reference's order, with
//! its constants, so that a score sitting near a rounding boundary rounds
//! the same way.

mod table;

use crate::severity::{CvssError, MAX_VECTOR_LEN};
use table::MACRO_SCORES;

/// The metrics a v4.0 vector may carry, with their values: base (the
/// first eleven, all mandatory), threat, environmental and supplemental.
const METRICS: [(&str, &[&str]); 32] = [
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

/// How many of [`METRICS`] are base metrics (mandatory).
const BASE: usize = 11;
/// Where the modified base metrics (`MAV`…) start in [`METRICS`]: base
/// metric `i` is modified by `METRICS[MODIFIED + i]`.
const MODIFIED: usize = 15;
const E: usize = 11;
const CR: usize = 12;
const IR: usize = 13;
const AR: usize = 14;

/// The effective value of each metric the score depends on: a modified
/// metric (`MAV`…) replaces its base metric unless absent or `X`; `E`
/// absent or `X` is `A`; `CR`, `IR`, `AR` absent or `X` are `H`.
#[derive(Clone, Copy)]
struct Effective {
    av: u8,
    ac: u8,
    at: u8,
    pr: u8,
    ui: u8,
    vc: u8,
    vi: u8,
    va: u8,
    sc: u8,
    si: u8,
    sa: u8,
    e: u8,
    cr: u8,
    ir: u8,
    ar: u8,
}

/// The CVSS v4.0 score of a `CVSS:4.0/…` vector, as FIRST's reference
/// calculator computes it: the base metrics, with the threat metric `E`
/// and the environmental metrics (`CR`, `IR`, `AR`, `MAV`…`MSA`) applied
/// when the vector has them (so CVSS-B, -BT, -BE or -BTE, whichever the
/// vector is). Supplemental metrics are checked for form and do not
/// change the score.
///
/// Metrics may come in any order. Refused, each with a named error: a
/// vector longer than 1 KiB, another version prefix, an empty or trailing
/// field, an unknown or repeated metric, a value the metric does not have,
/// and a missing base metric.
///
/// ```
/// use advisory_db::{CvssError, cvss4_base_score};
///
/// // Examples from FIRST's CVSS v4.0 calculator.
/// assert_eq!(
///     cvss4_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
///     Ok(9.3)
/// );
/// // Unreported exploitation (E:U) lowers it.
/// assert_eq!(
///     cvss4_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U"),
///     Ok(8.1)
/// );
/// assert_eq!(
///     cvss4_base_score("CVSS:4.0/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
///     Err(CvssError::Missing("AV"))
/// );
/// ```
pub fn cvss4_base_score(vector: &str) -> Result<f64, CvssError> {
    let metrics = parse(vector)?;
    Ok(score(&effective(&metrics)))
}

/// The vector's metrics, indexed as [`METRICS`]: the first byte of each
/// value present (values are unique by their first byte).
fn parse(vector: &str) -> Result<[Option<u8>; 32], CvssError> {
    if vector.len() > MAX_VECTOR_LEN {
        return Err(CvssError::TooLong {
            len: vector.len(),
            limit: MAX_VECTOR_LEN,
        });
    }
    let rest = vector
        .strip_prefix("CVSS:4.0/")
        .ok_or(CvssError::NotVersion4)?;
    let mut metrics = [None; 32];
    for field in rest.split('/') {
        let bad = || CvssError::Metric(field.chars().take(32).collect());
        let (name, value) = field.split_once(':').ok_or_else(bad)?;
        let i = METRICS
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| CvssError::Unknown(name.chars().take(32).collect()))?;
        if metrics[i].is_some() {
            return Err(CvssError::Duplicate(METRICS[i].0));
        }
        if !METRICS[i].1.contains(&value) {
            return Err(bad());
        }
        metrics[i] = Some(value.as_bytes()[0]);
    }
    if let Some(i) = metrics[..BASE].iter().position(Option::is_none) {
        return Err(CvssError::Missing(METRICS[i].0));
    }
    Ok(metrics)
}

fn effective(metrics: &[Option<u8>; 32]) -> Effective {
    // Base metrics are all present: `parse` checked.
    let base = |i: usize| match metrics[MODIFIED + i] {
        Some(v) if v != b'X' => v,
        _ => metrics[i].unwrap_or(b'X'),
    };
    let or_default = |i: usize, default: u8| match metrics[i] {
        Some(v) if v != b'X' => v,
        _ => default,
    };
    Effective {
        av: base(0),
        ac: base(1),
        at: base(2),
        pr: base(3),
        ui: base(4),
        vc: base(5),
        vi: base(6),
        va: base(7),
        sc: base(8),
        si: base(9),
        sa: base(10),
        e: or_default(E, b'A'),
        cr: or_default(CR, b'H'),
        ir: or_default(IR, b'H'),
        ar: or_default(AR, b'H'),
    }
}

/// The macro vector: EQ1..EQ6 as digits 0–2.
fn macro_vector(m: &Effective) -> [u8; 6] {
    let eq1 = if m.av == b'N' && m.pr == b'N' && m.ui == b'N' {
        0
    } else if (m.av == b'N' || m.pr == b'N' || m.ui == b'N') && m.av != b'P' {
        1
    } else {
        2
    };
    let eq2 = if m.ac == b'L' && m.at == b'N' { 0 } else { 1 };
    let eq3 = if m.vc == b'H' && m.vi == b'H' {
        0
    } else if m.vc == b'H' || m.vi == b'H' || m.va == b'H' {
        1
    } else {
        2
    };
    let eq4 = if m.si == b'S' || m.sa == b'S' {
        0
    } else if m.sc == b'H' || m.si == b'H' || m.sa == b'H' {
        1
    } else {
        2
    };
    let eq5 = match m.e {
        b'A' => 0,
        b'P' => 1,
        _ => 2,
    };
    let eq6 = if (m.cr == b'H' && m.vc == b'H')
        || (m.ir == b'H' && m.vi == b'H')
        || (m.ar == b'H' && m.va == b'H')
    {
        0
    } else {
        1
    };
    [eq1, eq2, eq3, eq4, eq5, eq6]
}

/// The table's score of a macro vector; `None` for one that does not
/// exist (a digit past its last level, or EQ3 2 with EQ6 0).
fn lookup(eqs: [u8; 6]) -> Option<f64> {
    let key = eqs.map(|d| b'0' + d);
    MACRO_SCORES
        .binary_search_by(|(k, _)| k.cmp(&key))
        .ok()
        .map(|i| MACRO_SCORES[i].1)
}

/// The highest-severity vectors of each EQ's levels (the reference's
/// `max_composed.js`): EQ1 as AV PR UI, EQ2 as AC AT, EQ3 with EQ6 as
/// VC VI VA CR IR AR (indexed by EQ3 then EQ6), EQ4 as SC SI SA.
const EQ1_MAXES: [&[&[u8; 3]]; 3] = [&[b"NNN"], &[b"ANN", b"NLN", b"NNP"], &[b"PNN", b"ALP"]];
const EQ2_MAXES: [&[&[u8; 2]]; 2] = [&[b"LN"], &[b"HN", b"LP"]];
const EQ3_EQ6_MAXES: [[&[&[u8; 6]]; 2]; 3] = [
    [&[b"HHHHHH"], &[b"HHLMMH", b"HHHMMM"]],
    [
        &[b"LHHHHH", b"HLHHHH"],
        &[b"LHLHMH", b"LHHHMM", b"HLHMHM", b"HLLMHH", b"LLHHHM"],
    ],
    [&[], &[b"LLLHHH"]],
];
const EQ4_MAXES: [&[u8; 3]; 3] = [b"HSS", b"HHH", b"LLL"];

/// Depth of each EQ level in severity steps, plus one
/// (`max_severity.js`); EQ3 and EQ6 together.
const EQ1_DEPTH: [f64; 3] = [1.0, 4.0, 5.0];
const EQ2_DEPTH: [f64; 2] = [1.0, 2.0];
const EQ3_EQ6_DEPTH: [[f64; 2]; 3] = [[7.0, 6.0], [8.0, 8.0], [10.0, 10.0]];
const EQ4_DEPTH: [f64; 3] = [6.0, 5.0, 4.0];

/// A metric value's severity level: 0.0 for the most severe, in steps of
/// 0.1, as the reference's `*_levels` tables.
fn level(v: u8, order: &[u8]) -> f64 {
    const STEPS: [f64; 4] = [0.0, 0.1, 0.2, 0.3];
    order
        .iter()
        .position(|o| *o == v)
        .map_or(f64::NAN, |i| STEPS[i])
}

const AV_LEVELS: &[u8] = b"NALP";
const PR_LEVELS: &[u8] = b"NLH";
const UI_LEVELS: &[u8] = b"NPA";
const AC_LEVELS: &[u8] = b"LH";
const AT_LEVELS: &[u8] = b"NP";
const CIA_LEVELS: &[u8] = b"HLN";
/// SC has no `S`: its levels start at 0.1.
const SC_LEVELS: &[u8] = b"_HLN";
const SIA_LEVELS: &[u8] = b"SHLN";
const REQ_LEVELS: &[u8] = b"HML";

/// Severity distances of the vector from one highest-severity vector,
/// summed per EQ: `[eq1, eq2, eq3 with eq6, eq4]`, and whether none is
/// negative (the vector is not more severe on any metric).
fn distances(
    m: &Effective,
    eq1: &[u8; 3],
    eq2: &[u8; 2],
    eq36: &[u8; 6],
    eq4: &[u8; 3],
) -> ([f64; 4], bool) {
    let d = [
        level(m.av, AV_LEVELS) - level(eq1[0], AV_LEVELS),
        level(m.pr, PR_LEVELS) - level(eq1[1], PR_LEVELS),
        level(m.ui, UI_LEVELS) - level(eq1[2], UI_LEVELS),
        level(m.ac, AC_LEVELS) - level(eq2[0], AC_LEVELS),
        level(m.at, AT_LEVELS) - level(eq2[1], AT_LEVELS),
        level(m.vc, CIA_LEVELS) - level(eq36[0], CIA_LEVELS),
        level(m.vi, CIA_LEVELS) - level(eq36[1], CIA_LEVELS),
        level(m.va, CIA_LEVELS) - level(eq36[2], CIA_LEVELS),
        level(m.sc, SC_LEVELS) - level(eq4[0], SC_LEVELS),
        level(m.si, SIA_LEVELS) - level(eq4[1], SIA_LEVELS),
        level(m.sa, SIA_LEVELS) - level(eq4[2], SIA_LEVELS),
        level(m.cr, REQ_LEVELS) - level(eq36[3], REQ_LEVELS),
        level(m.ir, REQ_LEVELS) - level(eq36[4], REQ_LEVELS),
        level(m.ar, REQ_LEVELS) - level(eq36[5], REQ_LEVELS),
    ];
    let fits = !d.iter().any(|x| *x < 0.0);
    // Summed in the reference's order (floating-point addition is not
    // associative).
    let sums = [
        d[0] + d[1] + d[2],
        d[3] + d[4],
        d[5] + d[6] + d[7] + d[11] + d[12] + d[13],
        d[8] + d[9] + d[10],
    ];
    (sums, fits)
}

fn score(m: &Effective) -> f64 {
    if [m.vc, m.vi, m.va, m.sc, m.si, m.sa]
        .iter()
        .all(|v| *v == b'N')
    {
        return 0.0;
    }
    let eqs = macro_vector(m);
    let [eq1, eq2, eq3, eq4, _, eq6] = eqs.map(usize::from);
    // Every macro vector of a valid vector is in the table.
    let Some(mut value) = lookup(eqs) else {
        return 0.0;
    };
    let lower = |i: usize| {
        let mut next = eqs;
        next[i] += 1;
        lookup(next)
    };
    let lower_eq3_eq6 = match (eq3, eq6) {
        (0 | 1, 1) => lower(2),
        (1, 0) => lower(5),
        // 00 goes down to 01 or 10: the higher of the two.
        (0, 0) => match (lower(5), lower(2)) {
            (Some(l), Some(r)) => Some(if l > r { l } else { r }),
            (l, r) => l.or(r),
        },
        _ => {
            let mut next = eqs;
            next[2] += 1;
            next[5] += 1;
            lookup(next)
        }
    };
    let lowers = [lower(0), lower(1), lower_eq3_eq6, lower(3), lower(4)];

    // The first highest-severity vector of the macro vector that the
    // vector does not exceed on any metric; failing one, the last tried.
    let mut found = ([0.0; 4], false);
    'search: for e1 in EQ1_MAXES[eq1] {
        for e2 in EQ2_MAXES[eq2] {
            for e36 in EQ3_EQ6_MAXES[eq3][eq6] {
                found = distances(m, e1, e2, e36, EQ4_MAXES[eq4]);
                if found.1 {
                    break 'search;
                }
            }
        }
    }
    let current = found.0;

    let step = 0.1;
    let depth = [
        EQ1_DEPTH[eq1] * step,
        EQ2_DEPTH[eq2] * step,
        EQ3_EQ6_DEPTH[eq3][eq6] * step,
        EQ4_DEPTH[eq4] * step,
    ];
    let mut existing = 0u32;
    let mut normalized = [0.0f64; 5];
    for (i, lower) in lowers.iter().enumerate() {
        let available = lower.map_or(f64::NAN, |l| value - l);
        if available >= 0.0 {
            existing += 1;
            // EQ5 (exploit maturity) has no distance within its levels.
            normalized[i] = if i == 4 {
                0.0
            } else {
                available * (current[i] / depth[i])
            };
        }
    }
    if existing > 0 {
        let sum = normalized[0] + normalized[1] + normalized[2] + normalized[3] + normalized[4];
        value -= sum / f64::from(existing);
    }
    round_half_up(value.clamp(0.0, 10.0))
}

/// The reference's final rounding: one decimal, half up, of the exact
/// binary value of `x + 1e-6` (the epsilon keeps 8.6 - 7.15 =
/// 1.4499999999999993 rounding to 1.5).
fn round_half_up(x: f64) -> f64 {
    let y = x + 1e-6;
    // Exact halves (k/10 + 0.05 in binary) are the multiples of 0.25 with
    // an odd quarter: round them up explicitly.
    let quarters = y * 4.0;
    if quarters.fract() == 0.0 && quarters % 2.0 == 1.0 {
        return ((y * 10.0 + 0.5).floor()) / 10.0;
    }
    // Otherwise no tie: formatting rounds the exact binary value
    // correctly, and parsing gives the nearest double to the decimal.
    format!("{y:.1}").parse().unwrap_or(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_reference_examples() {
        for (vector, score) in [
            // The calculator's default vector, and FIRST's v4.0 examples
            // document: Log4Shell, Heartbleed, nginx CVE-2022-41741,
            // phpMyAdmin CVE-2013-1937, POODLE, MySQL CVE-2013-0375.
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
                10.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N",
                8.7,
            ),
            (
                "CVSS:4.0/AV:L/AC:L/AT:P/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                7.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:A/VC:N/VI:N/VA:N/SC:L/SI:L/SA:N",
                5.1,
            ),
            (
                "CVSS:4.0/AV:N/AC:H/AT:P/PR:N/UI:P/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
                2.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:N/VI:N/VA:N/SC:L/SI:L/SA:N",
                5.3,
            ),
            // No impact anywhere: 0.0 whatever else.
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N/E:A",
                0.0,
            ),
            // Threat metric (the reference's threat test vectors).
            (
                "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:A",
                7.3,
            ),
            (
                "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:P",
                5.9,
            ),
            (
                "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:U",
                4.1,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U",
                8.1,
            ),
            (
                "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N/E:U",
                0.1,
            ),
            // Environmental: low requirements lower it; safety impact
            // (MSI:S) raises it.
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/CR:L/IR:L/AR:L",
                8.9,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MSI:S/MSA:S",
                10.0,
            ),
            // X is "not defined": the same as leaving the metric out.
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:X/CR:X/MAV:X",
                9.3,
            ),
            // Supplemental metrics do not change the score, nor does order.
            (
                "CVSS:4.0/U:Red/SA:N/SI:N/SC:N/VA:H/VI:H/VC:H/UI:N/PR:N/AT:N/AC:L/AV:N/S:P/AU:Y/R:I/V:C/RE:H",
                9.3,
            ),
            // 8.549999999999999 before rounding: the reference's epsilon
            // makes it 8.6.
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:P/VC:H/VI:L/VA:N/SC:H/SI:H/SA:H",
                8.6,
            ),
        ] {
            assert_eq!(cvss4_base_score(vector), Ok(score), "{vector}");
        }
    }

    #[test]
    fn refuses_malformed_vectors() {
        let good = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        assert_eq!(cvss4_base_score(""), Err(CvssError::NotVersion4));
        assert_eq!(
            cvss4_base_score(&good.replace("4.0", "3.1")),
            Err(CvssError::NotVersion4)
        );
        assert_eq!(
            cvss4_base_score("CVSS:4.0/"),
            Err(CvssError::Metric(String::new()))
        );
        assert_eq!(
            cvss4_base_score(&format!("{good}/")),
            Err(CvssError::Metric(String::new()))
        );
        assert_eq!(
            cvss4_base_score(&good.replace("/AC:L", "/AC:L/AC:H")),
            Err(CvssError::Duplicate("AC"))
        );
        assert_eq!(
            cvss4_base_score(&format!("{good}/E:P/E:P")),
            Err(CvssError::Duplicate("E"))
        );
        assert_eq!(
            cvss4_base_score(&good.replace("AV:N/", "")),
            Err(CvssError::Missing("AV"))
        );
        assert_eq!(
            cvss4_base_score(&good.replace("/SA:N", "")),
            Err(CvssError::Missing("SA"))
        );
        assert_eq!(
            cvss4_base_score(&format!("{good}/S:X/MS:X")),
            Err(CvssError::Unknown("MS".into()))
        );
        for (bad, field) in [
            (good.replace("AV:N", "AV:X"), "AV:X"),
            (good.replace("AV:N", "AV:n"), "AV:n"),
            (good.replace("AV:N", "AV:NN"), "AV:NN"),
            (good.replace("AV:N", "AV:N:N"), "AV:N:N"),
            (good.replace("AV:N", "AV"), "AV"),
            (format!("{good}/MSC:S"), "MSC:S"),
            (format!("{good}/U:red"), "U:red"),
            (format!("{good}/E:"), "E:"),
        ] {
            assert_eq!(
                cvss4_base_score(&bad),
                Err(CvssError::Metric(field.into())),
                "{bad}"
            );
        }
        let huge = format!("{good}/{}", "E:A/".repeat(1 << 18));
        assert_eq!(
            cvss4_base_score(&huge),
            Err(CvssError::TooLong {
                len: huge.len(),
                limit: MAX_VECTOR_LEN
            })
        );
        // A long name or value is quoted cut short in the error.
        let long_name = format!("{good}/{}:A", "Z".repeat(500));
        assert_eq!(
            cvss4_base_score(&long_name),
            Err(CvssError::Unknown("Z".repeat(32)))
        );
    }

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(MACRO_SCORES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            MACRO_SCORES
                .iter()
                .all(|(k, v)| k.iter().all(u8::is_ascii_digit) && (0.0..=10.0).contains(v))
        );
        // Every macro vector a vector can have: EQ3 2 only with EQ6 1.
        for eq1 in 0..3 {
            for eq2 in 0..2 {
                for eq3 in 0..3 {
                    for eq4 in 0..3 {
                        for eq5 in 0..3 {
                            for eq6 in 0..2 {
                                let exists = lookup([eq1, eq2, eq3, eq4, eq5, eq6]).is_some();
                                assert_eq!(exists, eq3 != 2 || eq6 == 1);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rounds_half_up() {
        assert_eq!(round_half_up(8.549999999999999), 8.6);
        assert_eq!(round_half_up(0.25 - 1e-6), 0.3);
        assert_eq!(round_half_up(1.2499), 1.2);
        assert_eq!(round_half_up(10.0), 10.0);
        assert_eq!(round_half_up(0.0), 0.0);
    }
}
