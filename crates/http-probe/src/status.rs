//! The status line of an HTTP/1.x answer, parsed strictly: it comes from
//! a server under test, which may send anything.

/// The longest status line read, line end included. A server that sends
/// more without a line end is answering garbage.
pub const MAX_STATUS_LINE: usize = 1024;

/// The HTTP version of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// A parsed status line: `HTTP/1.1 200 OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// The protocol version.
    pub version: Version,
    /// The status code, 100 to 599.
    pub code: u16,
    /// The reason phrase, possibly empty; bytes outside ASCII are replaced.
    pub reason: String,
}

/// Why bytes are not an HTTP/1.x status line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusLineError {
    /// No line end within [`MAX_STATUS_LINE`] bytes.
    #[error("no status line within {limit} bytes")]
    TooLong {
        /// The bound.
        limit: usize,
    },
    /// The answer ended before its first line did.
    #[error("the answer ended inside its status line")]
    Unterminated,
    /// The line does not start with `HTTP/1.0 ` or `HTTP/1.1 `.
    #[error("not an HTTP/1.0 or HTTP/1.1 status line")]
    Version,
    /// The status code is not three digits from 100 to 599.
    #[error("the status code is not three digits from 100 to 599")]
    Code,
    /// The code is followed by something other than a space or the line end.
    #[error("the status code is not followed by a space")]
    Separator,
    /// The reason phrase holds a control character (such as a bare CR).
    #[error("control character {byte:#04x} in the reason phrase")]
    Reason {
        /// The byte.
        byte: u8,
    },
    /// The line ends with a bare LF instead of CRLF.
    #[error("the status line does not end with CRLF")]
    LineEnd,
}

/// Parses the status line at the start of `head`, the first bytes of an
/// answer.
///
/// Returns `Ok(None)` while more bytes are needed (no LF yet and fewer
/// than [`MAX_STATUS_LINE`] bytes), or the status line and the length it
/// took, CRLF included. The grammar is RFC 9112's, strictly:
/// `HTTP/1.x SP 3DIGIT SP reason CRLF`; a missing reason phrase with its
/// space (`HTTP/1.1 200\r\n`, which some servers send) is accepted.
///
/// ```
/// use http_probe::{StatusLineError, Version, parse_status_line};
///
/// let (line, used) = parse_status_line(b"HTTP/1.1 200 OK\r\nServer: x\r\n").unwrap().unwrap();
/// assert_eq!((line.version, line.code, line.reason.as_str(), used), (Version::Http11, 200, "OK", 17));
/// assert_eq!(parse_status_line(b"HTTP/1.1 2"), Ok(None));
/// assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), Err(StatusLineError::Version));
/// ```
pub fn parse_status_line(head: &[u8]) -> Result<Option<(StatusLine, usize)>, StatusLineError> {
    let window = &head[..head.len().min(MAX_STATUS_LINE)];
    let Some(lf) = window.iter().position(|b| *b == b'\n') else {
        // A prefix that cannot become a status line fails at once.
        check_prefix(window)?;
        if window.len() >= MAX_STATUS_LINE {
            return Err(StatusLineError::TooLong {
                limit: MAX_STATUS_LINE,
            });
        }
        return Ok(None);
    };
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(StatusLineError::LineEnd)?;
    let (version, rest) = if let Some(rest) = line.strip_prefix(b"HTTP/1.1 ") {
        (Version::Http11, rest)
    } else if let Some(rest) = line.strip_prefix(b"HTTP/1.0 ") {
        (Version::Http10, rest)
    } else {
        return Err(StatusLineError::Version);
    };
    let code = parse_code(rest.get(..3).ok_or(StatusLineError::Code)?)?;
    let reason = match &rest[3..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(StatusLineError::Separator),
    };
    // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
    if let Some(byte) = reason
        .iter()
        .copied()
        .find(|b| *b != b'\t' && (*b < 0x20 || *b == 0x7f))
    {
        return Err(StatusLineError::Reason { byte });
    }
    let line = StatusLine {
        version,
        code,
        // Byte by byte: valid UTF-8 could still spell a C1 control.
        reason: reason
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    '\u{FFFD}'
                }
            })
            .collect(),
    };
    Ok(Some((line, lf + 1)))
}

/// Three ASCII digits, 100 to 599.
fn parse_code(digits: &[u8]) -> Result<u16, StatusLineError> {
    if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(StatusLineError::Code);
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return Err(StatusLineError::Code);
    }
    Ok(code)
}

/// Fails when `partial`, a line without its end yet, cannot start a valid
/// status line.
fn check_prefix(partial: &[u8]) -> Result<(), StatusLineError> {
    const VERSIONS: [&[u8]; 2] = [b"HTTP/1.1 ", b"HTTP/1.0 "];
    let n = partial.len().min(9);
    if !VERSIONS.iter().any(|v| v[..n] == partial[..n]) {
        return Err(StatusLineError::Version);
    }
    let rest = &partial[n..];
    let digits = &rest[..rest.len().min(3)];
    if !digits.iter().all(u8::is_ascii_digit)
        || digits.first().is_some_and(|d| !(b'1'..=b'5').contains(d))
    {
        return Err(StatusLineError::Code);
    }
    match rest.get(3) {
        None | Some(b' ') | Some(b'\r') => {}
        Some(_) => return Err(StatusLineError::Separator),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8]) -> (u16, String, usize) {
        let (line, used) = parse_status_line(bytes).unwrap().unwrap();
        (line.code, line.reason, used)
    }

    #[test]
    fn valid_status_lines_parse() {
        assert_eq!(ok(b"HTTP/1.1 200 OK\r\n"), (200, "OK".into(), 17));
        assert_eq!(
            ok(b"HTTP/1.0 500 Internal Server Error\r\nx"),
            (500, "Internal Server Error".into(), 36)
        );
        assert_eq!(ok(b"HTTP/1.1 204 \r\n"), (204, String::new(), 15));
        assert_eq!(ok(b"HTTP/1.1 404\r\n"), (404, String::new(), 14));
        assert_eq!(
            ok(b"HTTP/1.1 200 tab\there \xff\r\n").1,
            "tab\there \u{fffd}"
        );
        // UTF-8 for U+0097, a C1 control: replaced byte by byte.
        assert_eq!(ok(b"HTTP/1.1 200 a\xc2\x97b\r\n").1, "a\u{fffd}\u{fffd}b");
        assert_eq!(ok(b"HTTP/1.1 100 Continue\r\n").0, 100);
        assert_eq!(ok(b"HTTP/1.1 599 x\r\n").0, 599);
        let v = parse_status_line(b"HTTP/1.0 200 OK\r\n").unwrap().unwrap();
        assert_eq!(v.0.version, Version::Http10);
    }

    #[test]
    fn incomplete_lines_ask_for_more() {
        for partial in [
            &b""[..],
            b"H",
            b"HTTP/1.",
            b"HTTP/1.1 ",
            b"HTTP/1.1 2",
            b"HTTP/1.1 200",
            b"HTTP/1.1 200\r",
            b"HTTP/1.1 200 O",
        ] {
            assert_eq!(parse_status_line(partial), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn garbage_is_refused_with_its_cause() {
        use StatusLineError as E;
        let cases: [(&[u8], E); 17] = [
            (b"SSH-2.0-OpenSSH_9\r\n", E::Version),
            (b"http/1.1 200 OK\r\n", E::Version),
            (b"HTTP/2 200\r\n", E::Version),
            (b"HTTP/1.2 200 OK\r\n", E::Version),
            (b"HTTP/1.1  200 OK\r\n", E::Code),
            (b"HTTP/1.1 20 OK\r\n", E::Code),
            (b"HTTP/1.1 2000 OK\r\n", E::Separator),
            (b"HTTP/1.1 099 OK\r\n", E::Code),
            (b"HTTP/1.1 600 OK\r\n", E::Code),
            (b"HTTP/1.1 -20 OK\r\n", E::Code),
            (b"HTTP/1.1 200OK\r\n", E::Separator),
            (b"HTTP/1.1 200 OK\n", E::LineEnd),
            (b"HTTP/1.1 200 O\rK\r\n", E::Reason { byte: b'\r' }),
            (b"HTTP/1.1 200 O\0K\r\n", E::Reason { byte: 0 }),
            (b"HTTP/1.1 200 \x7f\r\n", E::Reason { byte: 0x7f }),
            // Refused before the line ends: no need to wait for more.
            (b"<html>", E::Version),
            (b"HTTP/1.1 9", E::Code),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse_status_line(bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn a_line_without_end_is_bounded() {
        let mut long = b"HTTP/1.1 200 ".to_vec();
        long.resize(MAX_STATUS_LINE - 1, b'a');
        assert_eq!(parse_status_line(&long), Ok(None));
        long.push(b'a');
        assert_eq!(
            parse_status_line(&long),
            Err(StatusLineError::TooLong {
                limit: MAX_STATUS_LINE
            })
        );
        // A line end past the bound is not looked for.
        long.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_status_line(&long),
            Err(StatusLineError::TooLong { .. })
        ));
        // Exactly at the bound, with its CRLF, is a line.
        let mut exact = b"HTTP/1.1 200 ".to_vec();
        exact.resize(MAX_STATUS_LINE - 2, b'a');
        exact.extend_from_slice(b"\r\n");
        assert_eq!(ok(&exact).2, MAX_STATUS_LINE);
    }
}
