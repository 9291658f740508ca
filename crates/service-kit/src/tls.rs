//! Outgoing TLS (auth-service calling sign-in providers, mail over smtps) uses
//! rustls with the `aws-lc-rs` provider, the one crypto library of the build
//! (the identity token's Ed25519 signatures use it too).

/// Installs the process-wide rustls provider; call before building an HTTP
/// client. Safe to call many times.
pub fn ensure_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
