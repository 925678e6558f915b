//! Tests of requirements parsing: each case is a file and the requirements
//! (name, requirement as written, number of hashes, line) and problems
//! (line, column, part of the message) it must give.

use crate::{Policy, parse_requirements};

type Requirements<'a> = &'a [(&'a str, &'a str, usize, usize)];
type Problems<'a> = &'a [(usize, usize, &'a str)];

const SHA: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn check(text: &str, policy: &Policy, want: Requirements<'_>, problems: Problems<'_>) {
    let (got, got_problems) = parse_requirements("requirements.txt", text, policy);
    let got: Vec<_> = got
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.requirement.as_str(),
                r.hashes.len(),
                r.line,
            )
        })
        .collect();
    assert_eq!(got, want, "{text:?}: {got_problems:?}");
    let shown: Vec<_> = got_problems
        .iter()
        .map(|p| (p.line, p.column, p.message.as_str()))
        .collect();
    assert_eq!(
        shown.len(),
        problems.len(),
        "{text:?}: want {problems:?}, got {shown:?}"
    );
    for (g, w) in shown.iter().zip(problems) {
        assert!(
            g.0 == w.0 && g.1 == w.1 && g.2.contains(w.2),
            "{text:?}: want {problems:?}, got {shown:?}"
        );
    }
    assert!(got_problems.iter().all(|p| p.file == "requirements.txt"));
}

#[test]
fn accepted() {
    let hashed = format!("numpy==1.26.4 --hash={SHA} --hash {SHA}\n");
    let continued = format!("numpy==1.26.4 \\\n    --hash={SHA} \\\n    --hash={SHA}\n");
    let cases: Vec<(&str, Requirements<'_>)> = vec![
        ("", &[]),
        ("\n\n   \n# only comments\n  # indented comment\n", &[]),
        ("requests\n", &[("requests", "requests", 0, 1)]),
        (
            "Django_REST.framework >= 3.14\n",
            &[(
                "django-rest-framework",
                "Django_REST.framework >= 3.14",
                0,
                1,
            )],
        ),
        ("a__b--c..d==1\n", &[("a-b-c-d", "a__b--c..d==1", 0, 1)]),
        (
            "requests[socks,security]>=2.31,<3\n",
            &[("requests", "requests[socks,security]>=2.31,<3", 0, 1)],
        ),
        (
            "pywin32 ; sys_platform == 'win32'\n",
            &[("pywin32", "pywin32 ; sys_platform == 'win32'", 0, 1)],
        ),
        (
            "uvloop>=0.19; python_version >= \"3.8\" and platform_machine != 'x86'  # fast loop\n",
            &[(
                "uvloop",
                "uvloop>=0.19; python_version >= \"3.8\" and platform_machine != 'x86'",
                0,
                1,
            )],
        ),
        (
            "numpy~=1.26 # pinned minor\n",
            &[("numpy", "numpy~=1.26", 0, 1)],
        ),
        (&hashed, &[("numpy", "numpy==1.26.4", 2, 1)]),
        (&continued, &[("numpy", "numpy==1.26.4", 2, 1)]),
        // Continuations join without a space, as pip joins them.
        ("num\\\npy==1\n", &[("numpy", "numpy==1", 0, 1)]),
        (
            "\n\nflask==3.0.0 \\\n\n",
            &[("flask", "flask==3.0.0", 0, 3)],
        ),
        // A comment line never continues.
        ("# note \\\nflask\n", &[("flask", "flask", 0, 2)]),
        // A continued comment swallows the next line, as in pip.
        (
            "flask # note \\\nrequests\nattrs\n",
            &[("flask", "flask", 0, 1), ("attrs", "attrs", 0, 3)],
        ),
        ("a\r\nb\r\n", &[("a", "a", 0, 1), ("b", "b", 0, 2)]),
        ("a\rb\r", &[("a", "a", 0, 1), ("b", "b", 0, 2)]),
        ("\u{feff}requests\n", &[("requests", "requests", 0, 1)]),
        (
            "\trequests\t==\t2.0\t\n",
            &[("requests", "requests\t==\t2.0", 0, 1)],
        ),
        // The same project for different environments.
        (
            "numpy==1.24; python_version < '3.9'\nnumpy==1.26; python_version >= '3.9'\n",
            &[
                ("numpy", "numpy==1.24; python_version < '3.9'", 0, 1),
                ("numpy", "numpy==1.26; python_version >= '3.9'", 0, 2),
            ],
        ),
    ];
    for (text, want) in cases {
        check(text, &Policy::default(), want, &[]);
    }
}

#[test]
fn rejected() {
    let cases: &[(&str, Problems<'_>)] = &[
        (
            "-e .\n",
            &[(1, 1, "editable installs (`-e`) are not allowed")],
        ),
        (
            "  --editable=git+https://x/y\n",
            &[(1, 3, "editable installs (`--editable`)")],
        ),
        (
            "-r other.txt\n",
            &[(1, 1, "includes of other requirement files (`-r`)")],
        ),
        ("-rother.txt\n", &[(1, 1, "(`-r`)")]),
        ("--requirement=other.txt\n", &[(1, 1, "(`--requirement`)")]),
        ("-c constraints.txt\n", &[(1, 1, "(`-c`)")]),
        ("--constraint c.txt\n", &[(1, 1, "(`--constraint`)")]),
        (
            "-i https://evil.example/simple\n",
            &[(
                1,
                1,
                "option `-i` is not allowed: it changes where packages come from",
            )],
        ),
        (
            "--index-url https://evil.example/simple\n",
            &[(1, 1, "`--index-url` is not allowed")],
        ),
        (
            "--extra-index-url=https://x\n",
            &[(1, 1, "`--extra-index-url` is not allowed")],
        ),
        ("-f ./wheels\n", &[(1, 1, "`-f` is not allowed")]),
        ("--find-links https://x\n", &[(1, 1, "`--find-links`")]),
        ("--trusted-host x.example\n", &[(1, 1, "`--trusted-host`")]),
        ("--no-index\n", &[(1, 1, "`--no-index`")]),
        ("--pre\n", &[(1, 1, "option `--pre` is not supported")]),
        (
            "--only-binary :all:\n",
            &[(1, 1, "option `--only-binary` is not supported")],
        ),
        (
            "--require-hashes\n",
            &[(1, 1, "`--require-hashes` is not supported")],
        ),
        ("--frobnicate\n", &[(1, 1, "unknown option `--frobnicate`")]),
        ("-x\n", &[(1, 1, "unknown option `-x`")]),
        (
            "pkg --global-option=--x\n",
            &[(1, 5, "option `--global-option` is not supported")],
        ),
        (
            "pkg --config-settings k=v\n",
            &[(1, 5, "`--config-settings`")],
        ),
        (
            "--index-url https://x --pre\n",
            &[(1, 1, "`--index-url`"), (1, 23, "`--pre`")],
        ),
        // URLs, VCS links and direct references.
        (
            "https://example.com/pkg-1.0.tar.gz\n",
            &[(1, 1, "URL requirements are not allowed")],
        ),
        (
            "git+https://github.com/a/b.git#egg=b\n",
            &[(1, 1, "URL requirements")],
        ),
        ("hg+http://x/y\n", &[(1, 1, "URL requirements")]),
        (
            "pkg @ https://example.com/pkg.whl\n",
            &[(1, 5, "direct references (`name @ url`) are not allowed")],
        ),
        ("pkg@git+https://x/y\n", &[(1, 4, "direct references")]),
        (
            "pkg[extra] @ file:///tmp/x ; python_version > '3'\n",
            &[(1, 12, "direct references")],
        ),
        // Local paths and archives.
        ("./local\n", &[(1, 1, "local paths are not allowed")]),
        ("../x.whl\n", &[(1, 1, "local paths")]),
        ("/abs/path\n", &[(1, 1, "local paths")]),
        ("~/x\n", &[(1, 1, "local paths")]),
        ("file:///tmp/x\n", &[(1, 1, "local paths")]),
        ("FILE:x\n", &[(1, 1, "local paths")]),
        ("sub/dir\n", &[(1, 1, "local paths")]),
        ("C:\\x\\y\n", &[(1, 1, "local paths")]),
        ("x.tar.gz\n", &[(1, 1, "local paths")]),
        ("pkg-1.0-py3-none-any.whl\n", &[(1, 1, "local paths")]),
        ("thing.zip\n", &[(1, 1, "local paths")]),
        // Hashes.
        (
            "--hash=sha256:abc\n",
            &[(1, 1, "`--hash` must follow a requirement")],
        ),
        ("pkg --hash\n", &[(1, 5, "`--hash` needs a value")]),
        (
            "pkg --hash=md5:d41d8cd98f00b204e9800998ecf8427e\n",
            &[(1, 5, "hash algorithm `md5` is not allowed")],
        ),
        (
            "pkg --hash=sha256:abc\n",
            &[(1, 5, "sha256 takes 64 hexadecimal digits")],
        ),
        ("pkg --hash=sha256\n", &[(1, 5, "invalid hash `sha256`")]),
        (
            "pkg --hash=sha256:zz24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n",
            &[(1, 5, "64 hexadecimal digits")],
        ),
        // Invalid PEP 508.
        (
            "requests >= \n",
            &[(
                1,
                10,
                "invalid requirement: unexpected end of version specifier",
            )],
        ),
        (
            "requests ==2.* ; python_version >\n",
            &[(1, 0, "invalid requirement")],
        ),
        ("-bad-name\n", &[(1, 1, "unknown option `-b`")]),
        ("b@d\n", &[(1, 2, "direct references")]),
        ("pkg==1.0\0\n", &[(1, 0, "invalid requirement")]),
        ("na me\n", &[(1, 4, "invalid requirement")]),
        (
            "pkg- >=1\n",
            &[(
                1,
                4,
                "project name must end with a letter or digit, not `-`",
            )],
        ),
        ("Ha-\u{4}\n", &[(1, 3, "not `-`")]),
        ("a_;python_version>'3'\n", &[(1, 2, "not `_`")]),
        ("pkg.\n", &[(1, 4, "not `.`")]),
        (
            "l[l_\n",
            &[(1, 4, "extra name must end with a letter or digit, not `_`")],
        ),
        (
            "pkg [ok, b- ]\n",
            &[(1, 11, "extra name must end with a letter or digit, not `-`")],
        ),
        ("pkg[a,b.]>=1\n", &[(1, 8, "not `.`")]),
        ("pkg[a,,b]\n", &[(1, 7, "invalid requirement")]),
        // `#` starts a comment only after whitespace.
        ("scipy#x==1\n", &[(1, 6, "invalid requirement")]),
        ("pkg ; ((((python_version > '3'))))\n", &[]),
        (
            "pkg==${VERSION}\n",
            &[(1, 6, "environment variable references")],
        ),
        ("é==1\n", &[(1, 1, "invalid requirement")]),
        // Duplicates.
        (
            "requests\nRequests==2\n",
            &[(
                2,
                1,
                "duplicate requirement for `requests` (first on line 1)",
            )],
        ),
        (
            "zope.interface\nzope_interface\n",
            &[(2, 1, "duplicate requirement for `zope-interface`")],
        ),
        (
            "a; python_version < '3'\na; python_version < '3'\n",
            &[(2, 1, "duplicate")],
        ),
        ("a; python_version < '3'\na\n", &[(2, 1, "duplicate")]),
        // Positions on continued lines: the token's own line.
        ("requests \\\n  --pre\n", &[(2, 3, "`--pre`")]),
        ("req \\\n  \\\n  -e x\n", &[(3, 3, "editable")]),
        ("\u{feff}-e x\n", &[(1, 1, "editable")]),
        ("ok\r\n-e x\r\n", &[(2, 1, "editable")]),
        // Everything is reported, not only the first problem.
        (
            "-e .\nrequests\n--index-url x\n./local\nrequests\n",
            &[
                (1, 1, "editable"),
                (3, 1, "index-url"),
                (4, 1, "local"),
                (5, 1, "duplicate"),
            ],
        ),
    ];
    for (text, problems) in cases {
        let (_, got) = parse_requirements("requirements.txt", text, &Policy::default());
        let shown: Vec<_> = got
            .iter()
            .map(|p| (p.line, p.column, p.message.as_str()))
            .collect();
        assert_eq!(
            shown.len(),
            problems.len(),
            "{text:?}: want {problems:?}, got {shown:?}"
        );
        for (g, w) in shown.iter().zip(*problems) {
            // A column of 0 in the table only pins the line.
            assert!(
                g.0 == w.0 && (w.1 == 0 || g.1 == w.1) && g.2.contains(w.2),
                "{text:?}: want {problems:?}, got {shown:?}"
            );
        }
    }
}

#[test]
fn lines_with_problems_are_left_out() {
    check(
        "ok==1\npkg --hash=sha256:abc\nother @ https://x\nfine\nok\n",
        &Policy::default(),
        &[("ok", "ok==1", 0, 1), ("fine", "fine", 0, 4)],
        &[
            (2, 5, "64 hexadecimal"),
            (3, 7, "direct references"),
            (5, 1, "duplicate"),
        ],
    );
}

#[test]
fn limits() {
    let policy = Policy {
        max_requirements: 3,
        ..Policy::default()
    };
    check(
        "a\n# c\nb\n",
        &policy,
        &[("a", "a", 0, 1), ("b", "b", 0, 3)],
        &[],
    );
    // The third reaches the limit: reported once, on its line.
    check(
        "a\nb\n\nc\nd\n",
        &policy,
        &[("a", "a", 0, 1), ("b", "b", 0, 2), ("d", "d", 0, 5)],
        &[(4, 1, "too many requirements: fewer than 3 are allowed")],
    );
    let default = Policy::default();
    let fifty: String = (0..50).map(|i| format!("p{i}\n")).collect();
    let (found, problems) = parse_requirements("r", &fifty, &default);
    assert_eq!(found.len(), 49);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "r:50:1: too many requirements: fewer than 50 are allowed"
    );
    let forty_nine: String = (0..49).map(|i| format!("p{i}\n")).collect();
    assert_eq!(parse_requirements("r", &forty_nine, &default).1, []);

    let small = Policy {
        max_code_bytes: 10,
        ..Policy::default()
    };
    check("abcdefgh\n", &small, &[("abcdefgh", "abcdefgh", 0, 1)], &[]);
    check(
        "abcdefghi\n",
        &small,
        &[],
        &[(
            1,
            1,
            "file is 10 bytes; files must be smaller than 10 bytes",
        )],
    );
}

#[test]
fn hostile_input() {
    // A very long line, a very long name, many continuations, and deep
    // brackets in a marker give problems or requirements, never a panic.
    let long_name = "a".repeat(500_000);
    let (found, problems) = parse_requirements("r", &long_name, &Policy::default());
    assert_eq!((found.len(), problems.len()), (1, 0));
    let long_line = format!("pkg{}", " ; python_version > '3'".repeat(20_000));
    let (_, problems) = parse_requirements("r", &long_line, &Policy::default());
    assert_eq!(
        problems.len(),
        1,
        "{:?}",
        &problems[..problems.len().min(2)]
    );
    let continued = "x\\\n".repeat(100_000);
    let (found, problems) = parse_requirements("r", &continued, &Policy::default());
    assert_eq!(
        (found[0].name.len(), found[0].line, problems.len()),
        (100_000, 1, 0)
    );
    let nested = format!(
        "pkg ; {}python_version > '3'{}",
        "(".repeat(50_000),
        ")".repeat(50_000)
    );
    let (_, problems) = parse_requirements("r", &nested, &Policy::default());
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "r:1:39: parentheses nested too deeply: more than 32"
    );
    // At the limit, on the 2 MiB stack of a test thread.
    let deepest = format!(
        "pkg ; {}python_version > '3'{}",
        "(".repeat(32),
        ")".repeat(32)
    );
    assert_eq!(parse_requirements("r", &deepest, &Policy::default()).1, []);
    let chain = format!(
        "pkg ; python_version > '3'{}",
        " and os_name == 'posix'".repeat(20_000)
    );
    let (found, problems) = parse_requirements("r", &chain, &Policy::default());
    assert_eq!((found.len(), problems.len()), (1, 0));
    let many_hashes = format!("pkg {}", format!("--hash={SHA} ").repeat(5_000));
    let (found, problems) = parse_requirements("r", &many_hashes, &Policy::default());
    assert_eq!((found[0].hashes.len(), problems.len()), (5_000, 0));
}
