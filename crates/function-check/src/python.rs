//! Python sources: syntax, denied imports and calls, the handler contract.

use rustpython_ast::Visitor;
use rustpython_parser::ast::{self, Constant, Expr, Ranged, Stmt};
use rustpython_parser::lexer::lex;
use rustpython_parser::lexer::{LexicalError, LexicalErrorType};
use rustpython_parser::text_size::TextSize;
use rustpython_parser::{Mode, ParseErrorType, StringKind, Tok, parse_tokens};

use crate::position::LineIndex;
use crate::{Policy, Problem, USER_FUNCTION, lowercase_first, module_is_denied};

/// CPython's tokenizer refuses more nested brackets than this.
const MAX_BRACKETS: usize = 200;
/// CPython's tokenizer refuses more indentation levels than this.
const MAX_INDENT: usize = 100;
/// Bound on the operator nesting of one statement (see [`Limits`]).
const MAX_EXPRESSION_DEPTH: usize = 1000;
/// Bound on `elif` chains, which nest in the syntax tree.
const MAX_ELIF: usize = 1000;
/// The parser, the tree walk and the tree's drop all recurse once per level
/// of nesting; the limits above keep that below a few thousand levels, which
/// this stack holds with a wide margin whatever thread the caller runs on.
const PARSER_STACK: usize = 64 << 20;

/// Checks one Python source file: syntax, denied imports and denied calls.
///
/// `file` only names the file in the problems returned. A source of
/// `policy.max_code_bytes` or more, or one holding a NUL byte, is reported
/// without being parsed; a syntax error (or nesting past the parser's
/// limits) is reported alone, as the parser stops there.
///
/// ```
/// use function_check::{Policy, check_python};
///
/// let source = "# os is fine in a comment\nfrom os import path\nx = eval('1')\n";
/// let problems = check_python("m.py", source, &Policy::default());
/// let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
/// assert_eq!(shown, [
///     "m.py:2:1: import of denied module `os`",
///     "m.py:3:5: call of denied function `eval`",
/// ]);
/// ```
pub fn check_python(file: &str, source: &str, policy: &Policy) -> Vec<Problem> {
    analyse(file, source, policy, false)
}

/// Checks the source of `user_function.py`: everything [`check_python`]
/// checks, plus the handler contract: a top-level `def handler(inputs, ...)`
/// (not `async def`) whose parameters after the first all have defaults.
///
/// This is the check for a function given as text rather than as a
/// directory; [`check_dir`](crate::check_dir) runs it on the file.
pub fn check_user_function(source: &str, policy: &Policy) -> Vec<Problem> {
    analyse(USER_FUNCTION, source, policy, true)
}

fn analyse(file: &str, source: &str, policy: &Policy, handler: bool) -> Vec<Problem> {
    let index = LineIndex::new(source);
    if source.len() as u64 >= policy.max_code_bytes {
        return vec![Problem::new(
            file,
            (1, 1),
            format!(
                "file is {} bytes; files must be smaller than {} bytes",
                source.len(),
                policy.max_code_bytes
            ),
        )];
    }
    if let Some(at) = source.find('\0') {
        return vec![Problem::new(
            file,
            index.position(at),
            "source contains a NUL byte",
        )];
    }
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("python-check".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || {
                parse_and_walk(file, source, policy, handler, &index)
            })
            .map(|thread| thread.join())
    });
    let mut problems = match outcome {
        Ok(Ok(problems)) => problems,
        Ok(Err(_panic)) => vec![Problem::new(
            file,
            (1, 1),
            "the Python parser failed on this file",
        )],
        Err(e) => vec![Problem::new(
            file,
            (1, 1),
            format!("cannot start the Python parser: {e}"),
        )],
    };
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

fn parse_and_walk(
    file: &str,
    source: &str,
    policy: &Policy,
    handler: bool,
    index: &LineIndex<'_>,
) -> Vec<Problem> {
    let at = |offset: TextSize| index.position(offset.to_usize());
    let mut limits = Limits::new();
    let tokens = lex(source, Mode::Module).map(|token| {
        let (tok, range) = token?;
        match limits.token(&tok) {
            Ok(()) => Ok((tok, range)),
            Err(message) => Err(LexicalError::new(
                LexicalErrorType::OtherError(message),
                range.start(),
            )),
        }
    });
    let body = match parse_tokens(tokens, Mode::Module, file) {
        Ok(ast::Mod::Module(module)) => module.body,
        Ok(_) => unreachable!("module mode parses a module"),
        Err(e) => {
            let mut offset = e.offset.to_usize();
            let eol = matches!(
                &e.error,
                ParseErrorType::Lexical(LexicalErrorType::OtherError(m)) if m.starts_with("EOL")
            );
            // The lexer stops past the character it does not know or the
            // bracket that closes nothing; point at that character.
            let culprit = match &e.error {
                ParseErrorType::Lexical(LexicalErrorType::UnrecognizedToken { tok }) => Some(*tok),
                ParseErrorType::Lexical(LexicalErrorType::NestingError) => {
                    source.get(..offset).and_then(|s| s.chars().next_back())
                }
                _ => None,
            };
            if let Some(c) =
                culprit.filter(|c| source.get(..offset).is_some_and(|s| s.ends_with(*c)))
            {
                offset -= c.len_utf8();
            }
            if eol {
                // The lexer stops past the line break; the string ends
                // at the end of its line.
                let line = source
                    .get(..offset)
                    .unwrap_or(source)
                    .trim_end_matches(['\n', '\r']);
                offset = line.len();
            }
            return vec![Problem::new(
                file,
                index.position(offset),
                format!("syntax error: {}", lowercase_first(&e.error.to_string())),
            )];
        }
    };
    let mut walker = Walker {
        file,
        policy,
        at: &at,
        problems: Vec::new(),
    };
    if handler {
        walker.check_handler(&body);
    }
    for stmt in body {
        walker.visit_stmt(stmt);
    }
    walker.problems
}

/// Bounds the nesting the parse tree will have, from the tokens alone, so a
/// hostile file cannot make the recursive parts of parsing, walking and
/// dropping the tree overflow the stack. It sees each token before the
/// parser does, and stops the parse at the first token past a limit.
///
/// Within one logical line, each bracket group is split into elements at its
/// commas; the tree depth of an element is at most the number of operator
/// tokens (anything but names, literals and commas) in it plus the depth of
/// its deepest bracket group. f-strings are parsed later from their text, so
/// each of their punctuation characters counts as an operator.
struct Limits {
    groups: Vec<Group>,
    /// Length of the `elif` chain at each indentation level.
    elifs: Vec<usize>,
    line_start: bool,
}

/// One open bracket group (or the logical line) in [`Limits`].
#[derive(Default)]
struct Group {
    /// Operators in the current element.
    ops: usize,
    /// Depth of the deepest bracket group in the current element.
    child: usize,
    /// Depth of the deepest element before the current one.
    best: usize,
}

impl Group {
    fn depth(&self) -> usize {
        self.best.max(self.ops + self.child)
    }

    fn check(&self) -> Result<(), String> {
        if self.ops + self.child > MAX_EXPRESSION_DEPTH {
            return Err(format!(
                "expression nested too deeply: more than {MAX_EXPRESSION_DEPTH} levels in one statement"
            ));
        }
        Ok(())
    }
}

impl Limits {
    fn new() -> Self {
        Self {
            groups: vec![Group::default()],
            elifs: vec![0],
            line_start: true,
        }
    }

    fn token(&mut self, tok: &Tok) -> Result<(), String> {
        match tok {
            Tok::Newline => {
                self.groups.truncate(1);
                self.groups[0] = Group::default();
                self.line_start = true;
                return Ok(());
            }
            Tok::Indent => {
                self.elifs.push(0);
                if self.elifs.len() - 1 > MAX_INDENT {
                    return Err(format!(
                        "too many levels of indentation: more than {MAX_INDENT}"
                    ));
                }
                return Ok(());
            }
            Tok::Dedent => {
                if self.elifs.len() > 1 {
                    self.elifs.pop();
                }
                return Ok(());
            }
            _ => {}
        }
        if self.line_start {
            self.line_start = false;
            let chain = self.elifs.last_mut().expect("one level at least");
            match tok {
                Tok::Elif => {
                    *chain += 1;
                    if self.elifs.iter().sum::<usize>() > MAX_ELIF {
                        return Err(format!(
                            "`elif` chain too long: more than {MAX_ELIF} nested branches"
                        ));
                    }
                }
                Tok::Else => {}
                _ => *chain = 0,
            }
        }
        let top = self.groups.last_mut().expect("one group at least");
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => {
                top.ops += 1;
                top.check()?;
                self.groups.push(Group::default());
                if self.groups.len() - 1 > MAX_BRACKETS {
                    return Err(format!(
                        "too many nested parentheses: more than {MAX_BRACKETS}"
                    ));
                }
            }
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => {
                if self.groups.len() > 1 {
                    let inner = self.groups.pop().expect("checked").depth();
                    let top = self.groups.last_mut().expect("checked");
                    top.child = top.child.max(inner);
                    top.check()?;
                }
            }
            Tok::Comma | Tok::Semi => {
                top.best = top.depth();
                top.ops = 0;
                top.child = 0;
            }
            Tok::String {
                kind: StringKind::FString | StringKind::RawFString,
                value,
                ..
            } => {
                let punctuation = value
                    .chars()
                    .filter(|c| !(c.is_alphanumeric() || c.is_whitespace() || *c == '_'))
                    .count();
                top.ops += 1 + punctuation;
                top.check()?;
            }
            Tok::Name { .. }
            | Tok::Int { .. }
            | Tok::Float { .. }
            | Tok::Complex { .. }
            | Tok::String { .. }
            | Tok::EndOfFile => {}
            _ => {
                top.ops += 1;
                top.check()?;
            }
        }
        Ok(())
    }
}

struct Walker<'a, F> {
    file: &'a str,
    policy: &'a Policy,
    at: &'a F,
    problems: Vec<Problem>,
}

impl<F: Fn(TextSize) -> (usize, usize)> Walker<'_, F> {
    fn report(&mut self, offset: TextSize, message: String) {
        self.problems
            .push(Problem::new(self.file, (self.at)(offset), message));
    }

    fn report_module(&mut self, offset: TextSize, module: &str) {
        if let Some(denied) = module_is_denied(module, self.policy) {
            let message = if denied == module {
                format!("import of denied module `{denied}`")
            } else {
                format!("import of `{module}`: module `{denied}` is denied")
            };
            self.report(offset, message);
        }
    }

    fn is_denied_call(&self, name: &str) -> bool {
        self.policy.denied_calls.iter().any(|d| d == name)
    }

    /// The handler contract, on the module's top-level statements.
    fn check_handler(&mut self, body: &[Stmt]) {
        let mut found = None;
        let mut other_binding = None;
        for stmt in body {
            match stmt {
                Stmt::FunctionDef(f) if f.name.as_str() == "handler" => found = Some(stmt),
                Stmt::AsyncFunctionDef(f) if f.name.as_str() == "handler" => found = Some(stmt),
                _ if binds_handler(stmt) => other_binding = Some(stmt.start()),
                _ => {}
            }
        }
        let Some(def) = found else {
            let (offset, message) = match other_binding {
                Some(offset) => (
                    offset,
                    "`handler` must be defined with `def handler(inputs):`",
                ),
                None => (
                    TextSize::default(),
                    "no top-level `def handler(inputs):` in user_function.py",
                ),
            };
            self.report(offset, message.into());
            return;
        };
        let args = match def {
            Stmt::FunctionDef(f) => &f.args,
            Stmt::AsyncFunctionDef(f) => {
                self.report(
                    f.start(),
                    "`handler` must be a plain function, not `async def`".into(),
                );
                &f.args
            }
            _ => unreachable!("only definitions are kept"),
        };
        let positional: Vec<_> = args.posonlyargs.iter().chain(&args.args).collect();
        if positional.is_empty() && args.vararg.is_none() {
            self.report(
                def.start(),
                "`handler` must take the inputs as its first positional parameter".into(),
            );
        }
        let extra = positional.iter().skip(1).copied().chain(&args.kwonlyargs);
        for arg in extra.filter(|a| a.default.is_none()) {
            let name = arg.def.arg.as_str().to_owned();
            self.report(
                arg.def.start(),
                format!(
                    "parameter `{name}` of `handler` needs a default: only the inputs are passed"
                ),
            );
        }
    }
}

/// Whether a top-level statement binds the name `handler` other than by `def`.
fn binds_handler(stmt: &Stmt) -> bool {
    let is_handler = |e: &Expr| matches!(e, Expr::Name(n) if n.id.as_str() == "handler");
    match stmt {
        Stmt::ClassDef(c) => c.name.as_str() == "handler",
        Stmt::Assign(a) => a.targets.iter().any(is_handler),
        Stmt::AnnAssign(a) => is_handler(&a.target),
        Stmt::Import(i) => i
            .names
            .iter()
            .any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == "handler"),
        Stmt::ImportFrom(i) => i
            .names
            .iter()
            .any(|a| a.asname.as_ref().unwrap_or(&a.name).as_str() == "handler"),
        _ => false,
    }
}

/// `name` or `base.name` when a call's callee has one of these shapes.
fn callee(func: &Expr) -> Option<(Option<&str>, &str)> {
    match func {
        Expr::Name(n) => Some((None, n.id.as_str())),
        Expr::Attribute(a) => match a.value.as_ref() {
            Expr::Name(base) => Some((Some(base.id.as_str()), a.attr.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// The module a dynamic import names by a string literal.
fn literal_module(call: &ast::ExprCall) -> Option<&str> {
    let first = call.args.first().or_else(|| {
        call.keywords
            .iter()
            .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == "name"))
            .map(|k| &k.value)
    })?;
    match first {
        Expr::Constant(ast::ExprConstant {
            value: Constant::Str(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

fn is_builtins(base: Option<&str>) -> bool {
    matches!(base, Some("builtins" | "__builtins__"))
}

impl<F: Fn(TextSize) -> (usize, usize)> Visitor for Walker<'_, F> {
    fn visit_stmt_import(&mut self, node: ast::StmtImport) {
        for alias in &node.names {
            self.report_module(alias.start(), alias.name.as_str());
        }
    }

    fn visit_stmt_import_from(&mut self, node: ast::StmtImportFrom) {
        let relative = node.level.is_some_and(|l| l.to_u32() > 0);
        if relative {
            return;
        }
        let Some(module) = &node.module else { return };
        self.report_module(node.start(), module.as_str());
        if module.as_str() == "builtins" {
            for alias in &node.names {
                if self.is_denied_call(alias.name.as_str()) {
                    let message = format!("import of denied function `{}`", alias.name.as_str());
                    self.report(alias.start(), message);
                }
            }
        }
    }

    // The generated visitor stops at these nodes; walk into them so every
    // expression is seen (defaults, annotations, keyword arguments,
    // comprehensions, `with` items, `case` guards and bodies).
    fn visit_arguments(&mut self, node: ast::Arguments) {
        let with_defaults = node
            .posonlyargs
            .into_iter()
            .chain(node.args)
            .chain(node.kwonlyargs);
        for arg in with_defaults {
            self.visit_arg(arg.def);
            if let Some(default) = arg.default {
                self.visit_expr(*default);
            }
        }
        for arg in node.vararg.into_iter().chain(node.kwarg) {
            self.visit_arg(*arg);
        }
    }

    fn visit_arg(&mut self, node: ast::Arg) {
        if let Some(annotation) = node.annotation {
            self.visit_expr(*annotation);
        }
    }

    fn visit_keyword(&mut self, node: ast::Keyword) {
        self.visit_expr(node.value);
    }

    fn visit_comprehension(&mut self, node: ast::Comprehension) {
        self.visit_expr(node.target);
        self.visit_expr(node.iter);
        for condition in node.ifs {
            self.visit_expr(condition);
        }
    }

    fn visit_withitem(&mut self, node: ast::WithItem) {
        self.visit_expr(node.context_expr);
        if let Some(target) = node.optional_vars {
            self.visit_expr(*target);
        }
    }

    fn visit_match_case(&mut self, node: ast::MatchCase) {
        self.visit_pattern(node.pattern);
        if let Some(guard) = node.guard {
            self.visit_expr(*guard);
        }
        for stmt in node.body {
            self.visit_stmt(stmt);
        }
    }

    fn visit_expr_call(&mut self, node: ast::ExprCall) {
        match callee(&node.func) {
            Some((None, name)) if self.is_denied_call(name) => {
                let message = format!("call of denied function `{name}`");
                self.report(node.start(), message);
            }
            Some((Some(base), name)) if is_builtins(Some(base)) && self.is_denied_call(name) => {
                let message = format!("call of denied function `{base}.{name}`");
                self.report(node.start(), message);
            }
            Some((base, name))
                if (name == "__import__" && (base.is_none() || is_builtins(base)))
                    || (name == "import_module" && matches!(base, None | Some("importlib"))) =>
            {
                if let Some(denied) =
                    literal_module(&node).and_then(|m| module_is_denied(m, self.policy))
                {
                    let message = format!("dynamic import of denied module `{denied}`");
                    self.report(node.start(), message);
                }
            }
            _ => {}
        }
        self.generic_visit_expr_call(node);
    }
}

#[cfg(test)]
mod tests;
