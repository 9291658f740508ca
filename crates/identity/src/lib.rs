//! The contract between the gateway and the services: who is calling, in which
//! workspace, with which scopes. The gateway verifies the client's credential and
//! sends this as a short-lived token it signs (`x-spaceport-identity`); every
//! service verifies the token with the gateway's public key and refuses requests
//! without one, so a pod reached around the gateway answers 401.

pub mod access;
pub mod credentials;
pub mod guard;
pub mod keys;
mod memory;
pub mod revocation;
pub mod scopes;
pub mod token;

pub use access::{ACCESS_TOKEN_TYPE, AccessClaims, AccessTokenVerifier};
pub use guard::{signing_key_from_config, verifier_from_config};
pub use keys::{PublicKeys, SigningKey};
pub use scopes::{Scope, ScopeSet};
pub use token::{HEADER, Identity, IdentitySigner, IdentityVerifier, PrincipalType};
