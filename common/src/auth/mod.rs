//! Bearer-token authentication and role authorisation for the gRPC services.
//!
//! Callers present a JWT (`authorization: Bearer <token>`) signed by a key the service trusts.
//! The pieces, one concern per file:
//!
//! - [`settings`]: [`AuthSettings`], the `auth` section (`CRM__AUTH__KEYS`, ...). Secure by
//!   default: no keys configured means every call needing a role is refused.
//! - [`keys`]: the public keys (ES256, RS256, EdDSA) from a JWKS file or a directory of
//!   `<kid>.pem` files, several at once for rotation.
//! - `store`: keeping them current, reloaded when the file or directory changes.
//! - [`verify`]: [`Verifier::verify`] turns a token into a [`Caller`] or an [`AuthError`].
//! - [`role`]: [`Role`], [`Caller`] and the [`AccessTable`] each service declares.
//! - [`layer`]: [`AuthLayer`], the tonic server layer enforcing the table, and
//!   [`current_caller`] / [`current_subject`] for code serving a call.
//! - [`mod@mint`]: development tokens and their public keys, for `tandemctl token` and tests.
//! - [`fixtures`]: fixed public keys for fuzzing (never for deployments).
//! - [`error`]: what went wrong, worded so that no token or key material leaks.

pub mod error;
pub mod fixtures;
pub mod keys;
pub mod layer;
pub mod mint;
pub mod role;
pub mod settings;
mod store;
pub mod verify;

#[cfg(test)]
mod test_support;

pub use error::{AuthError, KeyStoreError};
pub use keys::{KeyAlgorithm, KeySet};
pub use layer::{Auth, AuthLayer, current_caller, current_subject, with_caller};
pub use mint::{generate_signing_key, mint, public_jwk, public_jwks, public_key_pem};
pub use role::{Access, AccessTable, Caller, Role, UnknownRole};
pub use settings::AuthSettings;
pub use verify::Verifier;
