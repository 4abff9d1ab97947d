//! A schema fingerprint: what a tenant's schema (or database) contains, as a set of objects
//! with their definitions, and a digest of that set. Two tenants built by the same migrations
//! have the same fingerprint whatever order their objects were created in and whatever their
//! names: the schema's and the tenant role's names are taken out of every definition. Comparing
//! a tenant's fingerprint with the expected one for its version tells drift (a change made by
//! hand) and says what differs, object by object.
//!
//! Pure: the PostgreSQL catalogs are read by the backend
//! ([`crate::backend::read_fingerprints`], and the stamps by [`crate::backend::read_stamps`]).

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// The kinds of object a fingerprint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Table,
    Column,
    Constraint,
    Index,
    Sequence,
    View,
    Function,
    Trigger,
    Grant,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::Sequence => "sequence",
            ObjectKind::View => "view",
            ObjectKind::Function => "function",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Grant => "grant",
        }
    }

    /// The kind a catalog query names (`None` for an unknown one).
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "table" => ObjectKind::Table,
            "column" => ObjectKind::Column,
            "constraint" => ObjectKind::Constraint,
            "index" => ObjectKind::Index,
            "sequence" => ObjectKind::Sequence,
            "view" => ObjectKind::View,
            "function" => ObjectKind::Function,
            "trigger" => ObjectKind::Trigger,
            "grant" => ObjectKind::Grant,
            _ => return None,
        })
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a schema contains: each object, by kind and name (`table.column` for a column,
/// `table.constraint`, `object:grantee` for a grant), with its definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    objects: BTreeMap<(ObjectKind, String), String>,
}

/// One way a schema differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the schema, not expected.
    Added {
        kind: ObjectKind,
        name: String,
        definition: String,
    },
    /// Expected, not in the schema.
    Missing {
        kind: ObjectKind,
        name: String,
        definition: String,
    },
    /// In both, defined differently.
    Changed {
        kind: ObjectKind,
        name: String,
        expected: String,
        actual: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Added {
                kind,
                name,
                definition,
            } => write!(f, "+ {kind} {name}: {definition}"),
            Difference::Missing {
                kind,
                name,
                definition,
            } => write!(f, "- {kind} {name}: {definition}"),
            Difference::Changed {
                kind,
                name,
                expected,
                actual,
            } => write!(f, "~ {kind} {name}: {expected} -> {actual}"),
        }
    }
}

impl Fingerprint {
    /// Adds an object; its definition is read with `names` taken out.
    pub fn insert(&mut self, kind: ObjectKind, name: &str, definition: &str, names: &Names) {
        self.objects
            .insert((kind, names.generalize(name)), names.generalize(definition));
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects, ordered by kind and name.
    pub fn objects(&self) -> impl Iterator<Item = (ObjectKind, &str, &str)> {
        self.objects
            .iter()
            .map(|((kind, name), definition)| (*kind, name.as_str(), definition.as_str()))
    }

    /// SHA-256 of the objects in order, hex: equal digests, equal schemas.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (kind, name, definition) in self.objects() {
            for part in [kind.as_str(), name, definition] {
                // Length-prefixed: no definition can be mistaken for another's continuation.
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part.as_bytes());
            }
        }
        hex(&hasher.finalize())
    }

    /// How this schema differs from `expected`, by kind and name.
    pub fn diff(&self, expected: &Fingerprint) -> Vec<Difference> {
        let mut differences = Vec::new();
        for ((kind, name), definition) in &self.objects {
            match expected.objects.get(&(*kind, name.clone())) {
                None => differences.push(Difference::Added {
                    kind: *kind,
                    name: name.clone(),
                    definition: definition.clone(),
                }),
                Some(wanted) if wanted != definition => differences.push(Difference::Changed {
                    kind: *kind,
                    name: name.clone(),
                    expected: wanted.clone(),
                    actual: definition.clone(),
                }),
                Some(_) => {}
            }
        }
        for ((kind, name), definition) in &expected.objects {
            if !self.objects.contains_key(&(*kind, name.clone())) {
                differences.push(Difference::Missing {
                    kind: *kind,
                    name: name.clone(),
                    definition: definition.clone(),
                });
            }
        }
        differences.sort_by(|a, b| key(a).cmp(&key(b)));
        differences
    }
}

/// A fingerprint from objects already read with the tenant's names taken out (as
/// [`Fingerprint::objects`] gives them, and as the platform database keeps expected ones).
impl FromIterator<(ObjectKind, String, String)> for Fingerprint {
    fn from_iter<I: IntoIterator<Item = (ObjectKind, String, String)>>(objects: I) -> Self {
        Fingerprint {
            objects: objects
                .into_iter()
                .map(|(kind, name, definition)| ((kind, name), definition))
                .collect(),
        }
    }
}

impl Difference {
    /// The difference `line` says, as [`Difference`]'s `Display` wrote it against `expected`
    /// (the fingerprint the tenant was compared with): how a difference kept as text (the
    /// platform's `tenant_drift`) is reported again without reading the schema. `None` unless
    /// the line reads back to exactly itself: a name holding `": "`, a changed object
    /// `expected` does not have, or a line from another build.
    pub fn read(line: &str, expected: &Fingerprint) -> Option<Difference> {
        let (sign, rest) = line.split_at_checked(2)?;
        let (kind, rest) = rest.split_once(' ')?;
        let kind = ObjectKind::parse(kind)?;
        let (name, definition) = rest.split_once(": ")?;
        let (name, definition) = (name.to_owned(), definition.to_owned());
        let difference = match sign {
            "+ " => Difference::Added {
                kind,
                name,
                definition,
            },
            "- " => Difference::Missing {
                kind,
                name,
                definition,
            },
            "~ " => {
                // Either side may hold ` -> ` (a JSON operator in a default, say): the expected
                // one is known, so the actual one is what follows it.
                let wanted = expected.objects.get(&(kind, name.clone()))?;
                let actual = definition
                    .strip_prefix(wanted.as_str())?
                    .strip_prefix(" -> ")?;
                Difference::Changed {
                    kind,
                    expected: wanted.clone(),
                    actual: actual.to_owned(),
                    name,
                }
            }
            _ => return None,
        };
        (difference.to_string() == line).then_some(difference)
    }

    /// `added`, `missing` or `changed`.
    pub fn change(&self) -> &'static str {
        match self {
            Difference::Added { .. } => "added",
            Difference::Missing { .. } => "missing",
            Difference::Changed { .. } => "changed",
        }
    }

    pub fn kind(&self) -> ObjectKind {
        key(self).0
    }

    pub fn name(&self) -> &str {
        key(self).1
    }
}

fn key(difference: &Difference) -> (ObjectKind, &str) {
    match difference {
        Difference::Added { kind, name, .. }
        | Difference::Missing { kind, name, .. }
        | Difference::Changed { kind, name, .. } => (*kind, name),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// A cheap stand-in for a schema's fingerprint: how many catalog rows make up the schema and a
/// hash of their versions (`xmin`). Reading it deparses nothing, so it costs a fraction of
/// reading the fingerprint (0.22 ms against 1.2 ms a tenant of the built-in set, on 2,000 schemas
/// of an idle server; docs/SCALING.md). An
/// unchanged stamp means no catalog row of the schema was written since: the fingerprint read
/// with it still stands. A changed one only says "read again" (`VACUUM FULL` changes it without
/// changing the shape).
///
/// What it cannot see: a change outside the schema's own rows that changes how they read, e.g.
/// the tenant's role, a type or a collation of another schema renamed. A full read
/// (`tenantctl drift --full`) sees those.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CatalogStamp(String);

impl CatalogStamp {
    /// A stamp as the backend reads it, or as it was kept.
    pub fn new(stamp: String) -> Self {
        CatalogStamp(stamp)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CatalogStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The names that embed a tenant, replaced by `<tenant>` in every name and definition: the
/// schema and the tenant's role (one name in schema isolation), quoted or not.
#[derive(Debug, Clone)]
pub struct Names {
    replacements: Vec<(String, &'static str)>,
}

impl Names {
    /// The tenant's `schema` and `role` (in database isolation the schema is `public`, which
    /// embeds nothing and is kept).
    pub fn new(schema: &str, role: &str) -> Self {
        let mut replacements = Vec::new();
        for (name, placeholder) in [(schema, "<tenant>"), (role, "<tenant>")] {
            if name.is_empty() || name == "public" {
                continue;
            }
            replacements.push((format!("\"{}\"", name.replace('"', "\"\"")), placeholder));
            replacements.push((name.to_owned(), placeholder));
        }
        // Longest first, so that a name never replaces part of a longer one.
        replacements.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        Names { replacements }
    }

    /// `text` with the tenant's names replaced where they stand as whole identifiers (never
    /// inside a longer one: `tenant_ab` stays when the tenant is `tenant_a`).
    pub fn generalize(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (name, placeholder) in &self.replacements {
            if out.contains(name.as_str()) {
                out = replace_identifier(&out, name, placeholder);
            }
        }
        out
    }
}

/// Whether `c` continues an unquoted identifier.
fn continues_identifier(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// `text` with every occurrence of `name` that is not part of a longer identifier replaced.
fn replace_identifier(text: &str, name: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].chars().next();
        let quoted = name.starts_with('"');
        let whole = quoted
            || (!before.is_some_and(continues_identifier)
                && !after.is_some_and(continues_identifier));
        out.push_str(&rest[..at]);
        out.push_str(if whole { placeholder } else { name });
        rest = &rest[at + name.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{Difference, Fingerprint, Names, ObjectKind};

    fn fingerprint(schema: &str, objects: &[(ObjectKind, &str, &str)]) -> Fingerprint {
        let names = Names::new(schema, schema);
        let mut fingerprint = Fingerprint::default();
        for (kind, name, definition) in objects {
            fingerprint.insert(*kind, name, definition, &names);
        }
        fingerprint
    }

    #[test]
    fn the_order_of_creation_and_the_tenant_names_do_not_change_the_digest() {
        let a = fingerprint(
            "tenant_acme",
            &[
                (ObjectKind::Table, "units", "r"),
                (
                    ObjectKind::Column,
                    "units.id",
                    "bigint NOT NULL DEFAULT nextval('tenant_acme.units_id_seq'::regclass)",
                ),
                (ObjectKind::Grant, "units:tenant_acme", "SELECT,INSERT"),
            ],
        );
        let b = fingerprint(
            "tenant_bay_view",
            &[
                (ObjectKind::Grant, "units:tenant_bay_view", "SELECT,INSERT"),
                (
                    ObjectKind::Column,
                    "units.id",
                    "bigint NOT NULL DEFAULT nextval('\"tenant_bay_view\".units_id_seq'::regclass)",
                ),
                (ObjectKind::Table, "units", "r"),
            ],
        );
        assert_eq!(a.digest(), b.digest());
        assert!(a.diff(&b).is_empty());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn a_diff_says_what_was_added_what_is_missing_and_what_changed() {
        let expected = fingerprint(
            "tenant_acme",
            &[
                (ObjectKind::Column, "units.code", "text NOT NULL"),
                (ObjectKind::Index, "units_code_idx", "CREATE INDEX ..."),
            ],
        );
        let actual = fingerprint(
            "tenant_acme",
            &[
                (ObjectKind::Column, "units.code", "text"),
                (ObjectKind::Column, "units.notes", "text"),
            ],
        );
        let diff = actual.diff(&expected);
        assert_eq!(
            diff.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "~ column units.code: text NOT NULL -> text",
                "+ column units.notes: text",
                "- index units_code_idx: CREATE INDEX ...",
            ]
        );
        assert_ne!(actual.digest(), expected.digest());
        assert!(matches!(diff[0], Difference::Changed { .. }));
    }

    #[test]
    fn a_difference_kept_as_text_reads_back_as_itself_or_not_at_all() {
        let expected = fingerprint(
            "tenant_acme",
            &[
                (
                    ObjectKind::Column,
                    "units.meta",
                    "jsonb DEFAULT ('{}'::jsonb -> 'a'::text)",
                ),
                (ObjectKind::Index, "units_code_idx", "CREATE INDEX ..."),
            ],
        );
        let actual = fingerprint(
            "tenant_acme",
            &[
                (ObjectKind::Column, "units.meta", "jsonb -> x"),
                (ObjectKind::Column, "units.notes", "text"),
            ],
        );
        let diff = actual.diff(&expected);
        assert_eq!(diff.len(), 3);
        for difference in &diff {
            assert_eq!(
                Difference::read(&difference.to_string(), &expected).as_ref(),
                Some(difference),
                "both sides of the change hold ` -> `"
            );
        }
        // A change the expected fingerprint does not know, or a line of another shape: no.
        let other = fingerprint("tenant_acme", &[]);
        assert_eq!(Difference::read(&diff[0].to_string(), &other), None);
        assert_eq!(
            Difference::read("? column units.notes: text", &expected),
            None
        );
        assert_eq!(
            Difference::read("+ widget units.notes: text", &expected),
            None
        );
        assert_eq!(Difference::read("+", &expected), None);
    }

    #[test]
    fn a_longer_name_is_never_cut_by_a_shorter_one() {
        let names = Names::new("tenant_a", "tenant_a");
        assert_eq!(
            names.generalize("tenant_ab.x, \"tenant_a\".y, tenant_a.z"),
            "tenant_ab.x, <tenant>.y, <tenant>.z"
        );
    }
}
