//! A space's access control and security settings:
//! `PUT|DELETE /api/v1/spaces/{id}/access-control` and `…/security`.
//! Both are stored as JSON beside the space; `PUT` changes the fields it
//! names, `DELETE` restores the defaults.

use crate::access;
use crate::openapi::{Envelope, ErrorEnvelope};
use crate::schema::spaces;
use crate::spaces::{SpaceView, find, nullable, record_update};
use crate::{Fail, SpacesState, addresses, now};
use actix_web::web;
use diesel::prelude::*;
use identity::Identity;
use serde::{Deserialize, Serialize};
use service_kit::{ApiError, ApiResponse, FieldError, Json};
use utoipa::ToSchema;

/// Who may read a space's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessControl {
    /// Requests for the space's content must carry a credential. Default `false`.
    pub requires_auth: bool,
    /// Content may be read by anyone who knows its URL. Default `true`.
    pub public_read: bool,
}

impl Default for AccessControl {
    fn default() -> Self {
        AccessControl {
            requires_auth: false,
            public_read: true,
        }
    }
}

/// Where a watermark sits on an image: a compass gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Gravity {
    North,
    Northeast,
    East,
    Southeast,
    South,
    Southwest,
    West,
    Northwest,
    Center,
}

/// An image laid over the space's images when they are served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Watermark {
    /// Default `false`.
    pub enabled: bool,
    /// The watermark image, `https`; required while `enabled`.
    #[schema(required = true)]
    pub url: Option<String>,
    /// Default `southeast`.
    pub position: Gravity,
    /// 0 (invisible) to 1 (opaque). Default 0.5.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub opacity: f64,
}

/// A space's security settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Security {
    pub watermark: Watermark,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            watermark: Watermark {
                enabled: false,
                url: None,
                position: Gravity::Southeast,
                opacity: 0.5,
            },
        }
    }
}

/// Stored as JSON text; what the service wrote always reads back, and
/// anything else reads as the defaults.
macro_rules! stored_json {
    ($type:ty) => {
        impl $type {
            pub(crate) fn stored(text: &str) -> $type {
                serde_json::from_str(text).unwrap_or_default()
            }

            pub(crate) fn to_stored(&self) -> String {
                serde_json::to_string(self).expect("settings serialize")
            }
        }
    };
}
stored_json!(AccessControl);
stored_json!(Security);

#[derive(Debug, Deserialize, ToSchema)]
pub struct AccessControlPatch {
    requires_auth: Option<bool>,
    public_read: Option<bool>,
}

impl AccessControlPatch {
    /// Changes the fields named.
    pub(crate) fn apply(self, access: &mut AccessControl) {
        if let Some(v) = self.requires_auth {
            access.requires_auth = v;
        }
        if let Some(v) = self.public_read {
            access.public_read = v;
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AccessControlUpdate {
    /// The fields to change; the others keep their value.
    pub(crate) access_control: Option<AccessControlPatch>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WatermarkPatch {
    enabled: Option<bool>,
    /// An `https` URL; `null` clears it (only while not enabled).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    url: Option<Option<String>>,
    position: Option<Gravity>,
    /// 0 to 1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    opacity: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SecurityPatch {
    watermark: Option<WatermarkPatch>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SecurityUpdate {
    /// The fields to change; the others keep their value.
    security: Option<SecurityPatch>,
}

/// Reads the space within reach, changes its settings with `change`, writes
/// them, and records `space.updated` when they changed.
async fn change_settings(
    identity: Identity,
    id: String,
    state: web::Data<SpacesState>,
    change: impl FnOnce(&mut AccessControl, &mut Security) -> Result<(), ApiError> + Send + 'static,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    let reach = access::writable(&state, &identity).await?;
    let request_id = service_kit::request_id::current();
    let (row, recorded) = state
        .db
        .transaction(move |conn| {
            let before = find(conn, &reach, &id)?;
            let mut row = before.clone();
            let mut access_control = AccessControl::stored(&row.access_control);
            let mut security = Security::stored(&row.security);
            change(&mut access_control, &mut security)?;
            row.access_control = access_control.to_stored();
            row.security = security.to_stored();
            row.updated_at = now();
            diesel::update(spaces::table.find(&row.id))
                .set((
                    spaces::access_control.eq(&row.access_control),
                    spaces::security.eq(&row.security),
                    spaces::updated_at.eq(row.updated_at),
                ))
                .execute(conn)?;
            let recorded = record_update(conn, &before, &row, request_id)?;
            Ok::<_, Fail>((row, recorded))
        })
        .await
        .map_err(ApiError::from)?;
    state.space_content_changed(&row.id).await;
    if recorded {
        state.events.nudge();
    }
    Ok(ApiResponse::ok(row.into()))
}

/// Set access control
///
/// Changes the fields named; unknown fields are ignored. Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/spaces/{id}/access-control",
    operation_id = "set_space_access_control",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    request_body = AccessControlUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The space as updated.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A mistyped field.", body = ErrorEnvelope),
    )
)]
pub async fn set_access_control(
    identity: Identity,
    path: web::Path<String>,
    body: Json<AccessControlUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    let patch = body.into_inner().access_control;
    change_settings(identity, path.into_inner(), state, move |access, _| {
        if let Some(patch) = patch {
            patch.apply(access);
        }
        Ok(())
    })
    .await
}

/// Reset access control
///
/// Back to the defaults (`requires_auth: false`, `public_read: true`). Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/spaces/{id}/access-control",
    operation_id = "reset_space_access_control",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The space as reset.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn reset_access_control(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    change_settings(identity, path.into_inner(), state, |access, _| {
        *access = AccessControl::default();
        Ok(())
    })
    .await
}

/// Applies a watermark patch, checking the result as a whole.
fn apply_watermark(
    watermark: &mut Watermark,
    patch: WatermarkPatch,
    allow_private: bool,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Some(v) = patch.enabled {
        watermark.enabled = v;
    }
    if let Some(url) = patch.url {
        watermark.url = match url
            .map(|u| addresses::image_url(&u, allow_private))
            .transpose()
        {
            Ok(url) => url,
            Err(message) => {
                errors.push(FieldError::new("security.watermark.url", message));
                None
            }
        };
    }
    if let Some(v) = patch.position {
        watermark.position = v;
    }
    if let Some(v) = patch.opacity {
        if (0.0..=1.0).contains(&v) {
            watermark.opacity = v;
        } else {
            errors.push(FieldError::new(
                "security.watermark.opacity",
                "must be between 0 and 1",
            ));
        }
    }
    if errors.is_empty() && watermark.enabled && watermark.url.is_none() {
        errors.push(FieldError::new(
            "security.watermark.url",
            "is required while the watermark is enabled",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Set security settings
///
/// Changes the watermark fields named; unknown fields are ignored. Needs `spaces:write`.
#[utoipa::path(
    put,
    path = "/api/v1/spaces/{id}/security",
    operation_id = "set_space_security",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    request_body = SecurityUpdate,
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The space as updated.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
        (status = 422, description = "A bad position, opacity or URL, or an enabled watermark without a URL.", body = ErrorEnvelope),
    )
)]
pub async fn set_security(
    identity: Identity,
    path: web::Path<String>,
    body: Json<SecurityUpdate>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    let patch = body.into_inner().security;
    let allow_private = state.cdn.watermarks.allows_private_targets();
    change_settings(
        identity,
        path.into_inner(),
        state,
        move |_, security| match patch.and_then(|p| p.watermark) {
            Some(watermark) => apply_watermark(&mut security.watermark, watermark, allow_private),
            None => Ok(()),
        },
    )
    .await
}

/// Reset security settings
///
/// Back to the defaults (no watermark). Needs `spaces:write`.
#[utoipa::path(
    delete,
    path = "/api/v1/spaces/{id}/security",
    operation_id = "reset_space_security",
    tag = "spaces",
    params(("id" = String, Path, description = "The space's id (`spc_…`).")),
    security(("bearer_token" = ["spaces:write"]), ("api_key" = ["spaces:write"])),
    responses(
        (status = 200, description = "The space as reset.", body = Envelope<SpaceView>),
        (status = 401, description = "No credential.", body = ErrorEnvelope),
        (status = 403, description = "Without `spaces:write`, or no workspace selected.", body = ErrorEnvelope),
        (status = 404, description = "No such space within the credential's reach.", body = ErrorEnvelope),
    )
)]
pub async fn reset_security(
    identity: Identity,
    path: web::Path<String>,
    state: web::Data<SpacesState>,
) -> Result<ApiResponse<SpaceView>, ApiError> {
    change_settings(identity, path.into_inner(), state, |_, security| {
        *security = Security::default();
        Ok(())
    })
    .await
}
