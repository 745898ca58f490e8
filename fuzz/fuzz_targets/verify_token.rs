//! Any bytes as a bearer token: `Verifier::verify` answers with a `Caller` or an `AuthError`,
//! never a panic. Two shapes per input: the bytes themselves (when UTF-8), and the bytes cut in
//! three and base64url-encoded as header.payload.signature, which reaches header parsing, key
//! selection and the algorithm checks much sooner. Mirrored by the unit test
//! `auth::verify::tests::the_fuzz_target_body_does_not_panic_on_odd_inputs`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tandem_common::auth::{AuthSettings, Verifier, fixtures::TEST_JWKS};

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    Verifier::from_jwks_str(&AuthSettings::default(), TEST_JWKS).expect("the fixed test keys load")
});

/// base64url without padding (RFC 4648 §5), so the target needs no more dependencies.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let bits = chunk.iter().enumerate().fold(0u32, |acc, (i, byte)| {
            acc | (u32::from(*byte) << (16 - 8 * i))
        });
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = VERIFIER.verify(token);
    }
    let third = data.len() / 3;
    let (header, rest) = data.split_at(third);
    let (payload, signature) = rest.split_at(third);
    let token = format!(
        "{}.{}.{}",
        base64url(header),
        base64url(payload),
        base64url(signature)
    );
    let _ = VERIFIER.verify(&token);
});
