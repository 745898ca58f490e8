//! Any JSON: schema validation answers Ok or a reason, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = tandem_proto::events::validate(&json);
    }
});
