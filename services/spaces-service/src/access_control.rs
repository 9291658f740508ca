//! Who may read content, resolved file → folder → space, as Tuzzle cascades
//! it: a file's own setting wins, else the nearest folder (the file's, then
//! its ancestors) that has one, else the space's. Files and folders store
//! their own setting as a whole `{requires_auth, public_read}` (NULL while
//! they inherit): `PUT …/access-control` starts from what they inherit and
//! changes the fields it names; `DELETE` makes them inherit again.

use crate::settings::{AccessControl, AccessControlPatch, AccessControlUpdate};
use serde::Serialize;
use utoipa::ToSchema;

service_kit::words! {
    /// Where an access-control setting comes from.
    Source {
        /// Set on the file or folder itself.
        Direct = "direct",
        /// Inherited from a folder (`inherited_from` names it).
        Folder = "folder",
        /// Inherited from the space (`inherited_from` names it).
        Space = "space",
    }
}

/// A setting in force, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EffectiveAccess {
    /// Reading the content needs a credential for the space or a signed URL.
    pub requires_auth: bool,
    /// Anyone who knows the URL may read the content.
    pub public_read: bool,
    pub source: Source,
    /// The folder (`fld_…`) or space (`spc_…`) the setting is inherited
    /// from; null when set directly.
    #[schema(required = true)]
    pub inherited_from: Option<String>,
}

impl EffectiveAccess {
    /// Whether anyone may read the content without a credential or a
    /// signed URL.
    pub fn is_public(&self) -> bool {
        self.public_read && !self.requires_auth
    }

    pub fn settings(&self) -> AccessControl {
        AccessControl {
            requires_auth: self.requires_auth,
            public_read: self.public_read,
        }
    }
}

/// A stored setting (JSON), or `None` for text that is none.
pub fn parse(stored: Option<&str>) -> Option<AccessControl> {
    stored.and_then(|text| serde_json::from_str(text).ok())
}

pub fn store(setting: &AccessControl) -> String {
    serde_json::to_string(setting).expect("settings serialize")
}

/// The setting in force for an item whose own setting is `own`, below
/// `folders` (nearest first: `(folder id, its own setting)`), in the space
/// `space_id` whose setting is `space`.
pub fn resolve(
    own: Option<&AccessControl>,
    folders: &[(String, Option<AccessControl>)],
    space_id: &str,
    space: &AccessControl,
) -> EffectiveAccess {
    let effective = |setting: &AccessControl, source, from: Option<&str>| EffectiveAccess {
        requires_auth: setting.requires_auth,
        public_read: setting.public_read,
        source,
        inherited_from: from.map(str::to_owned),
    };
    if let Some(own) = own {
        return effective(own, Source::Direct, None);
    }
    for (id, setting) in folders {
        if let Some(setting) = setting {
            return effective(setting, Source::Folder, Some(id));
        }
    }
    effective(space, Source::Space, Some(space_id))
}

/// The whole setting `patch` makes of `base` (the item's own setting, or
/// what it inherits).
pub fn patched(base: AccessControl, patch: Option<AccessControlPatch>) -> AccessControl {
    let mut setting = base;
    if let Some(patch) = patch {
        patch.apply(&mut setting);
    }
    setting
}

/// An item's own setting, as stored, after a change: `None` clears it (the
/// item inherits again); an update starts from its own setting, else from
/// what it `inherited`.
pub fn changed<E>(
    own: Option<&str>,
    update: Option<AccessControlUpdate>,
    inherited: impl FnOnce() -> Result<EffectiveAccess, E>,
) -> Result<Option<String>, E> {
    let Some(update) = update else {
        return Ok(None);
    };
    let base = match parse(own) {
        Some(own) => own,
        None => inherited()?.settings(),
    };
    Ok(Some(store(&patched(base, update.access_control))))
}

/// The folder paths above and at `path` (`a/b/` → `a/`, `a/b/`), nearest
/// last.
pub fn ancestor_paths(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        end += i + 1;
        out.push(path[..end].to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(requires_auth: bool, public_read: bool) -> AccessControl {
        AccessControl {
            requires_auth,
            public_read,
        }
    }

    #[test]
    fn the_nearest_setting_wins() {
        let space = setting(false, true);
        let inherited = resolve(None, &[], "spc_1", &space);
        assert_eq!(inherited.source, Source::Space);
        assert_eq!(inherited.inherited_from.as_deref(), Some("spc_1"));
        assert!(inherited.is_public());
        let folders = vec![
            ("fld_inner".to_owned(), None),
            ("fld_outer".to_owned(), Some(setting(true, false))),
        ];
        let from_folder = resolve(None, &folders, "spc_1", &space);
        assert_eq!(
            (from_folder.source, from_folder.inherited_from.as_deref()),
            (Source::Folder, Some("fld_outer"))
        );
        assert!(!from_folder.is_public());
        let own = setting(false, true);
        let direct = resolve(Some(&own), &folders, "spc_1", &space);
        assert_eq!(
            (direct.source, direct.inherited_from.as_deref()),
            (Source::Direct, None)
        );
        assert!(direct.is_public());
    }

    #[test]
    fn ancestors() {
        assert_eq!(ancestor_paths("a/b/c/"), ["a/", "a/b/", "a/b/c/"]);
        assert!(ancestor_paths("").is_empty());
        assert_eq!(
            parse(Some(&store(&setting(true, true)))),
            Some(setting(true, true))
        );
        assert_eq!(parse(Some("junk")), None);
        assert_eq!(parse(None), None);
    }
}
