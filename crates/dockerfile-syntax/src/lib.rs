//! Dockerfile syntax as Docker reads it, without building anything:
//!
//! - [`parse_dockerfile`] (re-exported) parses a Dockerfile, keeping spans,
//!   heredocs and parser directives (`# escape=`);
//! - [`expand`] is `BuildKit`'s word expansion (`$VAR`, `${VAR:-word}`, the
//!   `#`/`%`/`/` pattern forms, quotes and escapes), ported with its test
//!   data;
//! - [`heredoc`] finds heredocs as `BuildKit` does (several per
//!   instruction, anywhere on a `RUN` line) and hands `parse_dockerfile` a
//!   text without their bodies, offsets unchanged;
//! - [`ignore`] is `.dockerignore` matching as moby/patternmatcher does it;
//! - [`position`] and [`describe`] turn spans into line:column and a
//!   one-line text of an instruction, for errors and build logs.
//!
//! Everything here reads untrusted text (a user's Dockerfile and context)
//! and is fuzzed (`fuzz/fuzz_targets/dockerfile_parse.rs`).
//!
//! ```
//! use dockerfile_syntax::{describe, expand::process_words, parse_dockerfile, position};
//! use std::collections::BTreeMap;
//!
//! let text = "FROM scratch\nENV GREETING=\"hello ${WHO:-world}\"\n";
//! let parsed = parse_dockerfile::parse(text).unwrap();
//! let (offset, line) = describe(&parsed.instructions[1], text);
//! assert_eq!(position(text, offset), (2, 1));
//! assert_eq!(line, "ENV GREETING=\"hello ${WHO:-world}\"");
//! let words = process_words("GREETING=\"hello ${WHO:-world}\"", &BTreeMap::new(), '\\').unwrap();
//! assert_eq!(words, ["GREETING=hello world"]);
//! ```

pub mod expand;
pub mod heredoc;
pub mod ignore;

pub use parse_dockerfile;
use parse_dockerfile::{Command, Instruction, JsonOrStringArray};

/// Line and column (1-based) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, column)
}

/// `i`, within `text` and moved back to a character boundary.
fn floor(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The instruction's start and its text on one line, for logs.
pub fn describe(instruction: &Instruction<'_>, text: &str) -> (usize, String) {
    let span = instruction_span(instruction);
    let raw = &text[floor(text, span.start)..floor(text, span.end).max(floor(text, span.start))];
    let one_line: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (span.start, one_line)
}

/// The span of a whole instruction, keyword to end.
pub fn instruction_span(instruction: &Instruction<'_>) -> std::ops::Range<usize> {
    use Instruction as I;
    let (start, end) = match instruction {
        I::Add(i) => (i.add.span.start, i.dest.span.end),
        I::Arg(i) => (i.arg.span.start, i.arguments.span.end),
        I::Cmd(i) => (i.cmd.span.start, command_end(&i.arguments)),
        I::Copy(i) => (i.copy.span.start, i.dest.span.end),
        I::Entrypoint(i) => (i.entrypoint.span.start, command_end(&i.arguments)),
        I::Env(i) => (i.env.span.start, i.arguments.span.end),
        I::Expose(i) => (
            i.expose.span.start,
            i.arguments.last().map_or(i.expose.span.end, |a| a.span.end),
        ),
        I::From(i) => (i.from.span.start, i.image.span.end),
        I::Healthcheck(i) => (i.healthcheck.span.start, i.healthcheck.span.end),
        I::Label(i) => (i.label.span.start, i.arguments.span.end),
        I::Maintainer(i) => (i.maintainer.span.start, i.name.span.end),
        I::Onbuild(i) => (i.onbuild.span.start, instruction_span(&i.instruction).end),
        I::Run(i) => (i.run.span.start, command_end(&i.arguments)),
        I::Shell(i) => (
            i.shell.span.start,
            i.arguments.last().map_or(i.shell.span.end, |a| a.span.end),
        ),
        I::Stopsignal(i) => (i.stopsignal.span.start, i.arguments.span.end),
        I::User(i) => (i.user.span.start, i.arguments.span.end),
        I::Volume(i) => (
            i.volume.span.start,
            match &i.arguments {
                JsonOrStringArray::Json(j) => j.span.end,
                JsonOrStringArray::String(s) => s.last().map_or(i.volume.span.end, |a| a.span.end),
            },
        ),
        I::Workdir(i) => (i.workdir.span.start, i.arguments.span.end),
        _ => (0, 0),
    };
    start..end.max(start)
}

fn command_end(command: &Command<'_>) -> usize {
    match command {
        Command::Exec(e) => e.span.end,
        Command::Shell(s) => s.span.end,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let text = "FROM a\nCOPY x y\n\tRUN z";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 7), (2, 1));
        assert_eq!(position(text, 12), (2, 6));
        assert_eq!(position(text, 17), (3, 2));
        assert_eq!(position(text, 1000), (3, 7));
        // Inside a multi-byte character: its start.
        assert_eq!(position("é", 1), (1, 1));
    }

    #[test]
    fn every_instruction_is_described_on_one_line() {
        let text =
            "FROM scratch AS a\nENV A=1 \\\n    B=2\nCOPY --chmod=755 x /y\nCMD [\"a\", \"b\"]\n";
        let parsed = parse_dockerfile::parse(text).unwrap();
        let steps: Vec<(usize, usize, String)> = parsed
            .instructions
            .iter()
            .map(|i| {
                let (offset, line) = describe(i, text);
                let (l, c) = position(text, offset);
                (l, c, line)
            })
            .collect();
        let lines: Vec<&str> = steps.iter().map(|(_, _, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "FROM scratch",
                "ENV A=1 \\ B=2",
                "COPY --chmod=755 x /y",
                "CMD [\"a\", \"b\"]"
            ]
        );
        assert_eq!((steps[2].0, steps[2].1), (4, 1));
    }
}
