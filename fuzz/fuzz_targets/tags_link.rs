//! The `Link` header of a tag list page: resolving the next page never
//! panics and never leaves the registry (scheme, host and port), since
//! the next request carries the registry's credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_client::fuzz::next_tags_page;
use url::Url;

const PAGES: [&str; 3] = [
    "https://registry.example/v2/team/app/tags/list?n=1000",
    "http://127.0.0.1:5000/v2/a/tags/list?last=x&n=2",
    "https://[::1]:8443/v2/a/b/c/tags/list",
];

fuzz_target!(|link: &str| {
    for page in PAGES {
        let current = Url::parse(page).expect("a fixed, valid URL");
        if let Ok(Some(next)) = next_tags_page(&current, Some(link)) {
            assert_eq!(next.origin(), current.origin(), "{link:?} -> {next}");
        }
    }
});
