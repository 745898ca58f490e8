//! Fixed public keys for fuzzing and tests, in one JWKS document.
//!
//! Never configure them in a deployment: the private half of `fuzz-rs256` is in this
//! repository's tests, so anyone could mint tokens these keys accept.

/// A JWKS with one key of each accepted kind: `fuzz-es256` (ES256), `fuzz-eddsa` (EdDSA) and
/// `fuzz-rs256` (RS256, 2048 bits).
pub const TEST_JWKS: &str = r#"{
  "keys": [
    {
      "kty": "EC",
      "crv": "P-256",
      "kid": "fuzz-es256",
      "alg": "ES256",
      "use": "sig",
      "x": "J0GhDpvDkeQhyT-58Nmczr-DBVpgr2FKqtwMCtHpCkk",
      "y": "A8bAmFAEYhD2Rhhp5SmtJb6_2pTLUosivGY-NOV7g60"
    },
    {
      "kty": "OKP",
      "crv": "Ed25519",
      "kid": "fuzz-eddsa",
      "alg": "EdDSA",
      "use": "sig",
      "x": "hUX2BMlXS27aGKiQ-Hq7xgDeCbuDBr7q4jw3claXT_k"
    },
    {
      "kty": "RSA",
      "kid": "fuzz-rs256",
      "alg": "RS256",
      "use": "sig",
      "n": "6pY0H8nw9i5fZxQ7eYp6qTLKBvUKVcEBM5H2017cAvf9MijDDh3KA4iVAzT4oQ99advTOaNKwJBZus8PgmEGniBKQMD6wfkBEsEIg5UrEgUkcT2ALsI8lNa-lT8MUv4tjFDuhKax1PEzxW8_FrgKKVKydQUb-fGBVYxLfuHRZfm2Nw7wfqtXpsmQPeCqeeGMjNG6S-Vahe63fwMTQJH6Cf9kd7TTK-WMcg0R_za1wMWOnokJCbpbui1ZiUOhlI5V9nPnc3gIxUT9aRuyg7EBq5Fltqzid1CxpFFuB0lRrQxA_fnX9rklba67TuBTJCjoKho8JJOVkhpdPOq8oJzz-Q",
      "e": "AQAB"
    }
  ]
}"#;
