//! HTTP status lines from a server under test (`http_probe`): parsing
//! never panics; an accepted line is within the bound, ends with CRLF,
//! has a code from 100 to 599 and a reason without control characters;
//! a verdict on a prefix never contradicts the verdict on the whole.
#![no_main]

use http_probe::{MAX_STATUS_LINE, StatusLineError, parse_status_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_status_line(data);
    if let Ok(Some((line, used))) = &whole {
        assert!(*used <= MAX_STATUS_LINE && *used <= data.len());
        assert!(data[..*used].ends_with(b"\r\n"));
        assert!((100..=599).contains(&line.code));
        assert!(!line.reason.chars().any(|c| c.is_control() && c != '\t'));
        // The bytes after the line do not change it.
        assert_eq!(parse_status_line(&data[..*used]), whole);
    }
    // A prefix refused before its line end stays refused with more bytes
    // (the prober stops reading at the first refusal).
    for cut in [1, data.len() / 2, data.len().saturating_sub(1)] {
        if cut == 0 || cut >= data.len() {
            continue;
        }
        if let Err(e) = parse_status_line(&data[..cut])
            && e != (StatusLineError::TooLong { limit: MAX_STATUS_LINE })
        {
            assert!(whole.is_err(), "{:?} then {whole:?}", e);
        }
    }
});
