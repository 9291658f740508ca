//! Outgoing TLS (auth-service calling sign-in providers, mail over smtps) uses
//! rustls with the `ring` provider, so no C crypto library is built or linked.

/// Installs the process-wide rustls provider; call before building an HTTP
/// client. Safe to call many times.
pub fn ensure_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
