//! Stock clients from another ecosystem against the platform, unchanged:
//! Python authlib completes the client-credentials grant through the gateway,
//! and PyJWT verifies the token with the published JWKS.
//!
//! Needs `SPACEPORT_PYTHON`: a Python with the packages of
//! `services/auth-service/tests/interop/requirements.txt` (`make interop-venv`).

use crate::platform::Platform;

#[tokio::test]
async fn authlib_and_pyjwt_work_unchanged_python() {
    let python = std::env::var("SPACEPORT_PYTHON").unwrap_or_else(|_| {
        panic!("SPACEPORT_PYTHON is not set: run `make interop-venv` (make test leaves this test out without it)")
    });
    let platform = Platform::start().await;
    let session = platform.sign_in("interop@example.com").await;
    let access = session["access_token"].as_str().unwrap();

    // An administrator creates a service principal, through the gateway.
    let gw = &platform.gw;
    let created = gw
        .send(
            gw.client
                .post(gw.url("/v1/auth/service-principals"))
                .bearer_auth(access)
                .json(&serde_json::json!({"name": "python-client", "scopes": "bookings:read spaces:read"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let data = created.json()["data"].clone();
    let client_id = data["client_id"].as_str().unwrap();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../services/auth-service/tests/interop/oauth_client.py"
    );
    let args = [
        script.to_owned(),
        gw.base.clone(),
        client_id.to_owned(),
        data["client_secret"].as_str().unwrap().to_owned(),
        "bookings:read".to_owned(),
        "http://localhost:8080".to_owned(),
        "spaceport".to_owned(),
    ];
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).args(args).output())
            .await
            .unwrap()
            .expect("run python");
    assert!(
        output.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON from the script");
    assert_eq!(result["claims"]["sub"], client_id);
    assert_eq!(result["claims"]["ptyp"], "service");
    assert_eq!(result["scope"], "bookings:read");
}
