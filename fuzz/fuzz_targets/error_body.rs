//! Registry error bodies: parsing never panics, and the code and message
//! that end up in an error are short and on one line (no control
//! characters). The input is tried as a whole body and as its `errors`
//! list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::fuzz::parse_error_body;

fn check(body: &[u8]) {
    let (code, message) = parse_error_body(body);
    // 200 characters and an ellipsis.
    assert!(message.chars().count() <= 201, "{message:?}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
    if let Some(code) = code {
        let code = code.to_string();
        assert!(!code.is_empty());
        assert!(code.chars().count() <= 65, "{code:?}");
        assert!(!code.chars().any(char::is_control), "{code:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&[&br#"{"errors":["#[..], data, b"]}"].concat());
});
