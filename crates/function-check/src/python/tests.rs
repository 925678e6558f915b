//! Tests of the Python checks: each case is a source and the problems it
//! must give, as (line, column, part of the message).

use super::{MAX_BRACKETS, MAX_ELIF, MAX_EXPRESSION_DEPTH, MAX_INDENT};
use crate::{Policy, check_python, check_user_function};

type Expected<'a> = &'a [(usize, usize, &'a str)];

fn assert_problems(what: &str, problems: &[crate::Problem], expected: Expected<'_>) {
    let got: Vec<(usize, usize, &str)> = problems
        .iter()
        .map(|p| (p.line, p.column, p.message.as_str()))
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: want {expected:?}, got {got:?}"
    );
    for (g, e) in got.iter().zip(expected) {
        assert!(
            g.0 == e.0 && g.1 == e.1 && g.2.contains(e.2),
            "{what}: want {expected:?}, got {got:?}"
        );
    }
}

fn check(source: &str, expected: Expected<'_>) {
    let problems = check_python("m.py", source, &Policy::default());
    assert!(problems.iter().all(|p| p.file == "m.py"));
    assert_problems(source, &problems, expected);
}

#[test]
fn imports() {
    let cases: &[(&str, Expected<'_>)] = &[
        ("import json\n", &[]),
        ("import os\n", &[(1, 8, "import of denied module `os`")]),
        (
            "import os.path\n",
            &[(1, 8, "import of `os.path`: module `os` is denied")],
        ),
        ("import os as x\n", &[(1, 8, "denied module `os`")]),
        ("from os import path\n", &[(1, 1, "denied module `os`")]),
        (
            "from os.path import join\n",
            &[(1, 1, "`os.path`: module `os`")],
        ),
        ("from os import *\n", &[(1, 1, "`os`")]),
        ("import subprocess, json\n", &[(1, 8, "`subprocess`")]),
        ("import json, subprocess\n", &[(1, 14, "`subprocess`")]),
        (
            "import json, socket, os\n",
            &[(1, 14, "`socket`"), (1, 22, "`os`")],
        ),
        // Names that merely start like a denied module.
        (
            "import osmosis\nimport socketserver\nimport subprocess32x\n",
            &[],
        ),
        (
            "from . import os\nfrom .os import x\nfrom ..subprocess import y\n",
            &[],
        ),
        ("import json  # import os\n", &[]),
        (
            "s = 'import os'\nt = \"\"\"\nimport subprocess\n\"\"\"\n",
            &[],
        ),
        ("def f():\n    import os\n", &[(2, 12, "`os`")]),
        (
            "class C:\n    def m(self):\n        if True:\n            try:\n                import socket\n            except ImportError:\n                from subprocess import run\n",
            &[(5, 24, "`socket`"), (7, 17, "`subprocess`")],
        ),
        (
            "async def f():\n    async with x() as y:\n        for _ in y:\n            while 1:\n                with z:\n                    import os\n",
            &[(6, 28, "`os`")],
        ),
        (
            "match x:\n    case 1:\n        import os\n",
            &[(3, 16, "`os`")],
        ),
        (
            "lambda: __import__('os')\n",
            &[(1, 9, "dynamic import of denied module `os`")],
        ),
        // Builtins imported by name from `builtins`.
        (
            "from builtins import eval as e\n",
            &[(1, 22, "import of denied function `eval`")],
        ),
        ("from builtins import print\n", &[]),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn calls() {
    let cases: &[(&str, Expected<'_>)] = &[
        ("eval('1')\n", &[(1, 1, "call of denied function `eval`")]),
        (
            "x = 1 + exec(code)\n",
            &[(1, 9, "call of denied function `exec`")],
        ),
        ("builtins.eval(s)\n", &[(1, 1, "`builtins.eval`")]),
        ("__builtins__.exec(s)\n", &[(1, 1, "`__builtins__.exec`")]),
        // Mentioned, not called.
        ("f = eval\nprint(eval)\nx.eval = 1\n", &[]),
        // Methods called eval are someone else's.
        ("model.eval()\nnp.exec(1)\n", &[]),
        ("# eval(x)\ns = 'exec(x)'\n", &[]),
        ("print(f'{eval(x)}')\n", &[(1, 10, "`eval`")]),
        (
            "@decorate(eval('1'))\ndef f(a=exec('2')):\n    pass\n",
            &[(1, 11, "`eval`"), (2, 9, "`exec`")],
        ),
        ("[eval(s) for s in xs]\n", &[(1, 2, "`eval`")]),
        (
            "[x for x in eval(s) if exec(t)]\n",
            &[(1, 13, "`eval`"), (1, 24, "`exec`")],
        ),
        ("{k: v async for k in exec(s)}\n", &[(1, 22, "`exec`")]),
        ("f(x, key=eval(s))\n", &[(1, 10, "`eval`")]),
        ("f(**eval(s))\n", &[(1, 5, "`eval`")]),
        (
            "with eval(s) as y, open(exec(t)):\n    pass\n",
            &[(1, 6, "`eval`"), (1, 25, "`exec`")],
        ),
        (
            "def f(a: eval('int'), *b: exec('x'), c=eval(1), **d: eval(2)) -> exec(3):\n    pass\n",
            &[
                (1, 10, "`eval`"),
                (1, 27, "`exec`"),
                (1, 40, "`eval`"),
                (1, 54, "`eval`"),
                (1, 66, "`exec`"),
            ],
        ),
        (
            "g = lambda x=eval(1), *, y=exec(2): x\n",
            &[(1, 14, "`eval`"), (1, 28, "`exec`")],
        ),
        (
            "match x:\n    case [1, *_] if eval(g):\n        exec(b)\n    case {'k': Point(x=1)}:\n        pass\n",
            &[(2, 21, "`eval`"), (3, 9, "`exec`")],
        ),
        (
            "try:\n    pass\nexcept eval(e):\n    exec(h)\nelse:\n    eval(1)\nfinally:\n    exec(2)\n",
            &[
                (3, 8, "`eval`"),
                (4, 5, "`exec`"),
                (6, 5, "`eval`"),
                (8, 5, "`exec`"),
            ],
        ),
        (
            "class C(eval(b), metaclass=exec(m)):\n    x: eval(t) = exec(v)\n",
            &[
                (1, 9, "`eval`"),
                (1, 28, "`exec`"),
                (2, 8, "`eval`"),
                (2, 18, "`exec`"),
            ],
        ),
        (
            "x = [a := eval(1), *exec(2)]\ndel x[eval(3)]\nassert exec(4), eval(5)\nraise eval(6) from exec(7)\n",
            &[
                (1, 11, "`eval`"),
                (1, 21, "`exec`"),
                (2, 7, "`eval`"),
                (3, 8, "`exec`"),
                (3, 17, "`eval`"),
                (4, 7, "`eval`"),
                (4, 20, "`exec`"),
            ],
        ),
        (
            "async def f():\n    await eval(1)\n    yield exec(2)\n    return (yield from eval(3))\n",
            &[(2, 11, "`eval`"), (3, 11, "`exec`"), (4, 24, "`eval`")],
        ),
        (
            "__import__('os')\n",
            &[(1, 1, "dynamic import of denied module `os`")],
        ),
        ("__import__('os.path')\n", &[(1, 1, "module `os`")]),
        (
            "__import__(name='subprocess')\n",
            &[(1, 1, "module `subprocess`")],
        ),
        (
            "builtins.__import__('socket')\n",
            &[(1, 1, "module `socket`")],
        ),
        ("importlib.import_module('os')\n", &[(1, 1, "module `os`")]),
        (
            "import_module('subprocess')\n",
            &[(1, 1, "module `subprocess`")],
        ),
        ("__import__('json')\nimportlib.import_module('json')\n", &[]),
        // Only literal names are known before run time.
        ("__import__(name)\nimportlib.import_module(n)\n", &[]),
        ("# __import__('os')\nx = \"__import__('os')\"\n", &[]),
        ("other.import_module('os')\n", &[]),
        ("importlib.import_module('.os', 'pkg')\n", &[]),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn custom_policy() {
    let policy = Policy {
        denied_modules: vec!["requests.adapters".into()],
        denied_calls: vec!["compile".into()],
        ..Policy::default()
    };
    let problems = check_python(
        "m.py",
        "import os, requests\nimport requests.adapters.x\neval(1)\ncompile(s)\n",
        &policy,
    );
    assert_problems(
        "custom",
        &problems,
        &[
            (2, 8, "module `requests.adapters` is denied"),
            (4, 1, "`compile`"),
        ],
    );
}

#[test]
fn syntax() {
    let cases: &[(&str, Expected<'_>)] = &[
        ("def f(:\n    pass\n", &[(1, 7, "syntax error")]),
        ("x = = 1\n", &[(1, 5, "syntax error")]),
        ("if x:\npass\n", &[(2, 1, "syntax error")]),
        ("def f():\n  a\n    b\n", &[(3, 1, "syntax error")]),
        ("x = (1,\n", &[(2, 1, "syntax error")]),
        ("s = 'unterminated\n", &[(1, 18, "syntax error")]),
        ("s = 'unterminated\r\nx = 1\r\n", &[(1, 18, "syntax error")]),
        ("x = 1 $ 2\n", &[(1, 7, "syntax error")]),
        ("x = 'é' ? 2\n", &[(1, 9, "syntax error")]),
        // A syntax error before a lexical one is the one reported.
        ("x = = 1\ns = 'unterminated\n", &[(1, 5, "syntax error")]),
        // Columns count characters, not bytes.
        ("s = 'ééé' +\n", &[(1, 12, "syntax error")]),
        ("é = 1\nx = )\n", &[(2, 5, "syntax error")]),
        ("x = [1, 2}\n", &[(1, 10, "syntax error")]),
        // Line endings and a byte order mark.
        ("x = 1\r\nimport os\r\n", &[(2, 8, "`os`")]),
        ("x = 1\rimport os\r", &[(2, 8, "`os`")]),
        ("\u{feff}import os\n", &[(1, 8, "`os`")]),
        ("x = 1\r\ny = = 2\r\n", &[(2, 5, "syntax error")]),
        ("import json\nx = 'a\0b'\n", &[(2, 7, "NUL byte")]),
        ("", &[]),
        ("\n\n# only a comment", &[]),
        ("x = 1", &[]),
    ];
    for (source, expected) in cases {
        check(source, expected);
    }
}

#[test]
fn python_3_11_syntax_parses() {
    let sources = [
        "match command.split():\n    case [action]:\n        pass\n    case [action, obj] if obj:\n        pass\n    case {'x': x, **rest}:\n        pass\n    case Point(x=0) | None:\n        pass\n    case _:\n        pass\n",
        "try:\n    pass\nexcept* ValueError as eg:\n    pass\nexcept* (TypeError, KeyError):\n    pass\n",
        "if (n := len(a)) > 10:\n    print(n)\n",
        "def f(a, b, /, c, *, d=1, **k):\n    return a\n",
        "with (\n    open('a') as a,\n    open('b') as b,\n):\n    pass\n",
        "x = f'{a!r:>{width}} {b=}'\n",
        "async def f():\n    async for x in y:\n        await x\n    return [i async for i in z]\n",
        "def g(*args: *Ts): ...\n",
        "x: list[int] = [*a, *b]\nprint(*a, **k)\n",
        "match = 1\ncase = 2\ntype = 3\nprint(match, case, type)\n",
    ];
    for source in sources {
        check(source, &[]);
    }
}

#[test]
fn handler_contract() {
    let cases: &[(&str, Expected<'_>)] = &[
        ("def handler(inputs):\n    return inputs\n", &[]),
        ("def handler(inputs: dict) -> dict:\n    return {}\n", &[]),
        (
            "def handler(inputs, /, context=None, *, debug=False):\n    pass\n",
            &[],
        ),
        ("def handler(*args):\n    pass\n", &[]),
        ("@wrap\ndef handler(inputs):\n    pass\n", &[]),
        // The last definition is the one that counts.
        (
            "async def handler(x):\n    pass\ndef handler(x):\n    pass\n",
            &[],
        ),
        ("", &[(1, 1, "no top-level `def handler(inputs):`")]),
        ("def main(inputs):\n    pass\n", &[(1, 1, "no top-level")]),
        (
            "if True:\n    def handler(inputs):\n        pass\n",
            &[(1, 1, "no top-level")],
        ),
        (
            "class C:\n    def handler(self, inputs):\n        pass\n",
            &[(1, 1, "no top-level")],
        ),
        (
            "x = 1\nhandler = lambda inputs: inputs\n",
            &[(2, 1, "must be defined with `def")],
        ),
        (
            "from impl import handler\n",
            &[(1, 1, "must be defined with `def")],
        ),
        (
            "class handler:\n    pass\n",
            &[(1, 1, "must be defined with `def")],
        ),
        (
            "async def handler(inputs):\n    pass\n",
            &[(1, 1, "plain function, not `async def`")],
        ),
        (
            "def handler():\n    pass\n",
            &[(1, 1, "first positional parameter")],
        ),
        (
            "def handler(*, inputs):\n    pass\n",
            &[(1, 1, "first positional parameter"), (1, 16, "`inputs`")],
        ),
        (
            "def handler(inputs, context, *, flag):\n    pass\n",
            &[
                (1, 21, "parameter `context` of `handler` needs a default"),
                (1, 33, "`flag`"),
            ],
        ),
        (
            "import os\ndef handler(inputs):\n    return eval(inputs['x'])\n",
            &[(1, 8, "`os`"), (3, 12, "`eval`")],
        ),
        (
            "def handler(inputs)\n    pass\n",
            &[(1, 20, "syntax error")],
        ),
    ];
    for (source, expected) in cases {
        let problems = check_user_function(source, &Policy::default());
        assert!(problems.iter().all(|p| p.file == "user_function.py"));
        assert_problems(source, &problems, expected);
    }
}

#[test]
fn size_limit() {
    let policy = Policy {
        max_code_bytes: 100,
        ..Policy::default()
    };
    // 99 bytes pass, 100 do not; a file at the limit is not even parsed.
    let ok = format!("x = {}\n", "1".repeat(94));
    assert_eq!(ok.len(), 99);
    assert_eq!(check_python("m.py", &ok, &policy), []);
    let big = format!("import os\n{}\n", "#".repeat(89));
    assert_eq!(big.len(), 100);
    assert_problems(
        "big",
        &check_python("m.py", &big, &policy),
        &[(
            1,
            1,
            "file is 100 bytes; files must be smaller than 100 bytes",
        )],
    );
}

/// Hostile nesting gives a problem, not a stack overflow, on the 2 MiB
/// stack of a test thread.
#[test]
fn deep_nesting_is_a_problem() {
    let n = 100_000;
    let cases: Vec<(String, (usize, usize, &str))> = vec![
        (
            format!("x = {}1{}\n", "(".repeat(n), ")".repeat(n)),
            (1, 5 + MAX_BRACKETS, "too many nested parentheses"),
        ),
        (
            format!("x = {}\n", "[".repeat(n)),
            (1, 5 + MAX_BRACKETS, "too many nested parentheses"),
        ),
        (
            format!("x = {}1\n", "-".repeat(n)),
            (1, 4 + MAX_EXPRESSION_DEPTH, "expression nested too deeply"),
        ),
        (
            format!("x = {}1\n", "not ".repeat(n)),
            (1, 4 + 4 * MAX_EXPRESSION_DEPTH - 3, "nested too deeply"),
        ),
        (
            format!("x = 1{}\n", "+1".repeat(n)),
            (1, 6 + 2 * (MAX_EXPRESSION_DEPTH - 1), "nested too deeply"),
        ),
        (
            format!("x = a{}\n", ".b".repeat(n)),
            (1, 6 + 2 * (MAX_EXPRESSION_DEPTH - 1), "nested too deeply"),
        ),
        (
            format!("x = f{}\n", "()".repeat(n)),
            (1, 6 + 2 * (MAX_EXPRESSION_DEPTH - 1), "nested too deeply"),
        ),
        (
            format!("x = {}y\n", "lambda: ".repeat(n)),
            (1, 0, "nested too deeply"),
        ),
        (
            format!("x = f'{{{}1{}}}'\n", "(".repeat(n), ")".repeat(n)),
            (1, 5, "nested too deeply"),
        ),
        (
            (0..1000)
                .map(|i| format!("{}if x:\n", " ".repeat(i)))
                .collect(),
            (MAX_INDENT + 2, 1, "too many levels of indentation"),
        ),
        (
            format!(
                "if x:\n    pass\n{}",
                "elif x:\n    pass\n".repeat(MAX_ELIF + 10)
            ),
            (2 * MAX_ELIF + 3, 1, "`elif` chain too long"),
        ),
    ];
    for (source, (line, column, message)) in cases {
        let problems = check_python("m.py", &source, &Policy::default());
        assert_eq!(problems.len(), 1, "{:?}: {problems:?}", &source[..40]);
        let p = &problems[0];
        assert!(p.message.contains(message), "{:?}: {p}", &source[..40]);
        assert_eq!(p.line, line, "{:?}: {p}", &source[..40]);
        // Some columns depend on how the limit is counted; 0 skips them.
        if column != 0 {
            assert_eq!(p.column, column, "{:?}: {p}", &source[..40]);
        }
    }
}

/// Everything just inside the limits parses, is walked and dropped without
/// exhausting the parser's stack, and is still checked.
#[test]
fn nesting_at_the_limits_is_checked() {
    let depth = MAX_EXPRESSION_DEPTH - 2;
    let sources = [
        format!(
            "x = {}eval(1){}\n",
            "(".repeat(MAX_BRACKETS - 1),
            ")".repeat(MAX_BRACKETS - 1)
        ),
        format!("x = {}eval(1)\n", "-".repeat(depth)),
        format!("x = eval(1){}\n", "+1".repeat(depth)),
        format!("x = eval(1){}\n", ".b".repeat(depth)),
        format!("x = {}eval(1)\n", "lambda: ".repeat(depth / 2)),
        format!("x = eval(1){}\n", "[0]".repeat(depth / 2)),
        // Each level of indentation holding an `elif` chain.
        (0..MAX_INDENT)
            .map(|i| {
                let pad = " ".repeat(i);
                format!(
                    "{pad}if x:\n{pad} pass\n{}{pad}else:\n",
                    format!("{pad}elif x:\n{pad} pass\n").repeat(MAX_ELIF / MAX_INDENT)
                )
            })
            .collect::<String>()
            + &" ".repeat(MAX_INDENT)
            + "eval(1)\n",
        // All limits at once: an expression at the limit in the last branch
        // of an `elif` chain at the limit, at the deepest indentation.
        (0..MAX_INDENT - 1)
            .map(|i| format!("{}if x:\n", " ".repeat(i)))
            .collect::<String>()
            + &format!("{pad}if x:\n{pad} pass\n", pad = " ".repeat(MAX_INDENT - 1))
            + &format!(
                "{pad}elif x:\n{pad} pass\n",
                pad = " ".repeat(MAX_INDENT - 1)
            )
            .repeat(MAX_ELIF - 2)
            + &format!(
                "{pad}elif x:\n{pad} x = {}eval(1)\n",
                "-".repeat(depth),
                pad = " ".repeat(MAX_INDENT - 1)
            ),
        // Commas reset the count: wide literals are fine.
        format!(
            "x = [{}eval(1)]\n",
            "-1, ".repeat(10 * MAX_EXPRESSION_DEPTH)
        ),
    ];
    for source in sources {
        let problems = check_python("m.py", &source, &Policy::default());
        assert_eq!(problems.len(), 1, "{:?}: {problems:?}", &source[..40]);
        assert!(
            problems[0]
                .message
                .contains("call of denied function `eval`"),
            "{:?}: {problems:?}",
            &source[..40]
        );
    }
}
