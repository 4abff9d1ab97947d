//! What the engine migrates: the platform database or one tenant.

use std::fmt;

use sha2::{Digest, Sha256};

use domain::tenant::TenantSlug;

/// One unit of migration, with its own history table and its own lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Platform,
    Tenant(TenantSlug),
}

impl Target {
    /// Key of the advisory lock that serialises runners on this target, and only this target:
    /// two tenants of one database never share a key (unlike sqlx's per-database key).
    pub fn lock_key(&self) -> i64 {
        let name = match self {
            Target::Platform => "platform".to_owned(),
            Target::Tenant(slug) => slug.storage_name(),
        };
        let digest = Sha256::digest(format!("tenancy/migrations/{name}").as_bytes());
        let mut bytes = [0_u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    pub fn tenant(&self) -> Option<&TenantSlug> {
        match self {
            Target::Platform => None,
            Target::Tenant(slug) => Some(slug),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Platform => f.pad("platform"),
            Target::Tenant(slug) => f.pad(&format!("tenant {slug}")),
        }
    }
}

impl From<TenantSlug> for Target {
    fn from(slug: TenantSlug) -> Self {
        Target::Tenant(slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_tenant_and_are_stable() {
        let a = Target::Tenant(TenantSlug::parse("alpha").unwrap_or_else(|e| panic!("{e}")));
        let b = Target::Tenant(TenantSlug::parse("bravo").unwrap_or_else(|e| panic!("{e}")));
        assert_ne!(a.lock_key(), b.lock_key());
        assert_ne!(a.lock_key(), Target::Platform.lock_key());
        assert_eq!(a.lock_key(), a.clone().lock_key());
    }
}
