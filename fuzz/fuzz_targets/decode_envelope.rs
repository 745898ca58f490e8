//! Any bytes: decoding an envelope either succeeds and re-encodes to an equal envelope, or
//! fails cleanly. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::events::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let wire = serde_json::to_vec(&envelope).expect("an envelope always encodes");
        let again = Envelope::decode(&wire).expect("what we encode we decode");
        assert_eq!(again, envelope);
    }
});
