//! The reference: how fast this machine signs access tokens when it does
//! nothing else, through the same code path the service signs them with.

use identity::{AccessClaims, SigningKey};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct SigningRate {
    pub threads: usize,
    pub signatures: u64,
    pub elapsed: Duration,
}

impl SigningRate {
    pub fn per_second(&self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64()
    }
}

/// Signs tokens shaped like `template` on `threads` OS threads for `duration`.
/// Each one gets fresh `iat`, `exp` and `jti`, as the service's do.
pub fn measure(
    key: &SigningKey,
    template: &AccessClaims,
    threads: usize,
    duration: Duration,
) -> SigningRate {
    let start = Instant::now();
    let deadline = start + duration;
    let signatures = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut signed = 0u64;
                    while Instant::now() < deadline {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let claims = AccessClaims {
                            iat: now,
                            exp: now + 3600,
                            jti: ulid::Ulid::new().to_string(),
                            ..template.clone()
                        };
                        let token = key.sign_jwt(identity::ACCESS_TOKEN_TYPE, &claims);
                        std::hint::black_box(token);
                        signed += 1;
                    }
                    signed
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a signing thread panicked"))
            .sum()
    });
    SigningRate {
        threads,
        signatures,
        elapsed: start.elapsed(),
    }
}
