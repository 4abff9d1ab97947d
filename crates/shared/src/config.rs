//! Configuration: the contract's environment variables, read once and validated up front.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DATABASE_URL` | platform database, `postgres://…` or `sqlite://<file>` | `postgres://postgres@127.0.0.1:5432/tenancy` |
//! | `TENANT_DATABASE_URL` | server holding tenant schemas or databases (admin connection) | `DATABASE_URL` |
//! | `TENANT_ISOLATION` | `schema` or `database` | `schema` |
//! | `AMQP_URL` | RabbitMQ | `amqp://guest:guest@127.0.0.1:5672/%2f` |
//! | `TENANCY_NAMESPACE` | namespace of every exchange and queue: names are `<namespace>.<name>` | empty |
//! | `MIGRATIONS_DIR` | overrides the built-in migrations (`platform/`, `tenant/`, `tenant-seeds/`) | built in |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` (and `_TRACES_`/`_METRICS_`), `_PROTOCOL`, `OTEL_SDK_DISABLED`, `OTEL_SERVICE_NAME` | OpenTelemetry export ([`OtelConfig`]); no endpoint = none. The other `OTEL_*` variables are read by the SDK itself | unset |
//! | `HEALTH_ADDR` | where a service serves `/healthz`, `/readyz` and `/metrics` (not part of the contract) | `127.0.0.1:8080` |
//! | `MIGRATOR_CONCURRENCY` | commands one migrator process handles at once (and its prefetch) (not part of the contract) | `64` |
//! | `MIGRATOR_SERVER_SLOTS` | migrations running at once on one tenant server across every migrator; also each process's pool there (not part of the contract) | `16` |
//! | `PROVISIONER_TEMPLATES` | `on`: a new schema-isolated tenant gets a verified template of the latest tenant migrations in one transaction, instead of replaying them one by one; `off`: always the migrations (not part of the contract) | `on` |
//! | `LOG_FORMAT` | `auto` (human on a terminal, JSON otherwise), `human` or `json` (not part of the contract) | `auto` |
//!
//! Tests build a [`Config`] from a map with [`Config::from_lookup`]; nothing here calls
//! `set_var`. URLs are kept in [`SecretUrl`], whose `Display` and `Debug` hide the password.

use std::fmt;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::str::FromStr;

use domain::Isolation;
use sqlx::postgres::PgConnectOptions;

mod otel;
pub use otel::{OtelConfig, OtlpProtocol, OtlpTarget};

/// A URL that may carry a password. Shown with the password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The full URL, credentials included: only for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The nodes of a list of URLs (`amqp://…,amqp://…`, the form `AMQP_URL` takes for a
    /// RabbitMQ cluster), in order; a single URL is a list of one. A node starts at a comma
    /// followed by a scheme (`amqp://`, `amqps://`, or any other, which validation then
    /// refuses), so a comma elsewhere, as in a password, does not split a URL.
    pub fn nodes(&self) -> Vec<SecretUrl> {
        let text = self.0.as_str();
        let starts_a_url = |rest: &str| {
            rest.split_once("://").is_some_and(|(scheme, _)| {
                scheme
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_alphabetic())
                    && scheme
                        .trim_start()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
            })
        };
        let mut nodes = Vec::new();
        let mut from = 0;
        for (at, _) in text.match_indices(',') {
            if starts_a_url(&text[at + 1..]) {
                nodes.push(SecretUrl::new(text[from..at].trim()));
                from = at + 1;
            }
        }
        nodes.push(SecretUrl::new(text[from..].trim()));
        nodes
    }

    /// The URL with every credential masked: the password of its user information, and the
    /// value of every query parameter that carries one (`?password=…`, `sslpassword`, tokens,
    /// secrets, API keys), wherever it sits; in a list of AMQP URLs, in each.
    pub fn redacted(&self) -> String {
        let nodes = self.nodes();
        if nodes.len() > 1 {
            return nodes
                .iter()
                .map(SecretUrl::redacted)
                .collect::<Vec<_>>()
                .join(",");
        }
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return mask_query(&self.0);
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                let hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!("{user}{hidden}@{host}")
            }
            None => authority.to_owned(),
        };
        format!("{scheme}://{authority}{}", mask_query(path))
    }
}

/// `text` with the value of every credential-carrying query parameter replaced by `***`.
fn mask_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_credential_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{before}?{}", masked.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Whether a query parameter's name says it carries a credential. Broad on purpose: masking a
/// harmless value costs nothing, printing a secret cannot be undone.
fn is_credential_key(key: &str) -> bool {
    let key = percent_decode(key).to_ascii_lowercase();
    const CONTAINS: [&str; 8] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "apikey",
        "api_key",
        "api-key",
    ];
    CONTAINS.iter().any(|part| key.contains(part))
        || matches!(
            key.as_str(),
            "pass" | "pwd" | "auth" | "key" | "sig" | "signature"
        )
}

/// Decodes `%XX` escapes (enough to compare a parameter name; invalid escapes stay as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// A database: PostgreSQL, or an SQLite file. `Debug` shows [`DatabaseUrl::redacted`]: the
/// parsed options hold the password in clear.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// Boxed: the options are large and a `Config` is passed around by value.
    Postgres {
        url: SecretUrl,
        options: Box<PgConnectOptions>,
    },
    Sqlite {
        path: PathBuf,
    },
}

impl DatabaseUrl {
    fn parse(variable: &str, value: &str) -> Result<Self, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(value).map_err(|e| {
                format!(
                    "{variable}: not a valid PostgreSQL URL ({})",
                    SecretUrl::new(e.to_string()).redacted()
                )
            })?;
            return Ok(DatabaseUrl::Postgres {
                url: SecretUrl::new(value),
                options: Box::new(options),
            });
        }
        if let Some(path) = value
            .strip_prefix("sqlite://")
            .or_else(|| value.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(format!(
                    "{variable}: an SQLite URL must name a file (sqlite://path/to/platform.sqlite3)"
                ));
            }
            return Ok(DatabaseUrl::Sqlite {
                path: PathBuf::from(path),
            });
        }
        Err(format!(
            "{variable}: `{}` is neither postgres://… nor sqlite://…",
            SecretUrl::new(value).redacted()
        ))
    }

    /// For messages: the URL without credentials.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Postgres { url, .. } => url.redacted(),
            DatabaseUrl::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// How log lines are written to stderr (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human when stderr is a terminal, JSON otherwise (containers, CI, files).
    #[default]
    Auto,
    /// One coloured line per event, with the span context, for people at a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `Human` or `Json`: `Auto` decided by whether stderr is a terminal.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    /// `auto`, `human` or `json`, ignoring case and surrounding blanks; empty means `auto`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(LogFormat::Auto),
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(ParseLogFormatError(value.to_owned())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `LOG_FORMAT` value that is not `auto`, `human` or `json`. The message does not name the
/// variable: the caller (`config`) prefixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log format: use `auto`, `human` or `json`")]
pub struct ParseLogFormatError(pub String);

/// What logging and telemetry need, readable on its own: `tenantctl` sets up its logging before
/// it knows whether the command needs a database or a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub otel: OtelConfig,
    pub log_format: LogFormat,
}

impl TelemetrySettings {
    /// Reads the process environment.
    ///
    /// # Errors
    /// An invalid `LOG_FORMAT`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads `LOG_FORMAT` and the `OTEL_*` variables of [`OtelConfig`] through `lookup` (an
    /// empty value counts as unset).
    ///
    /// # Errors
    /// An invalid `LOG_FORMAT`, OTLP endpoint or protocol, or `OTEL_SDK_DISABLED`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let log_format = lookup("LOG_FORMAT")
            .filter(|v| !v.trim().is_empty())
            .map_or(Ok(LogFormat::Auto), |v| v.parse())
            .map_err(|e| format!("LOG_FORMAT: {e}"));
        match (log_format, OtelConfig::from_lookup(&lookup)) {
            (Ok(log_format), Ok(otel)) => Ok(TelemetrySettings { otel, log_format }),
            (log_format, otel) => Err(ConfigError {
                problems: log_format
                    .err()
                    .into_iter()
                    .chain(otel.err().into_iter().flatten())
                    .collect(),
            }),
        }
    }
}

/// Every setting of a service.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub tenant_database_url: DatabaseUrl,
    pub tenant_isolation: Isolation,
    /// `TENANT_OWNER_ROLE`: the role that owns every tenant's schema or database and what
    /// migrations create there; tenant sessions run as it (`SET ROLE` at connection start).
    /// `None`: the connecting user owns them.
    pub tenant_owner_role: Option<String>,
    pub amqp_url: SecretUrl,
    pub namespace: String,
    pub migrations_dir: Option<PathBuf>,
    pub otel: OtelConfig,
    pub health_addr: std::net::SocketAddr,
    pub log_format: LogFormat,
    pub migrator: MigratorConfig,
    pub provisioner: ProvisionerConfig,
}

/// How the provisioner builds a tenant's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisionerConfig {
    /// `PROVISIONER_TEMPLATES`: step 3 instantiates a verified template of the tenant set (one
    /// transaction, checked by fingerprint) instead of replaying every migration; any mismatch
    /// falls back to the migrations. Off: always the migrations.
    pub templates: bool,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        ProvisionerConfig { templates: true }
    }
}

/// How hard the migrators may work a tenant server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratorConfig {
    /// Commands one process handles at once; also its prefetch. Larger than the slots: a
    /// handler that is reading the tenant row, recording a result or waiting for a confirm
    /// holds no connection to the tenant server.
    pub concurrency: u16,
    /// Migrations running at once on one tenant server across every migrator replica (each
    /// holds a slot: one advisory lock on that server). Bounds the connections all replicas
    /// open there to twice this.
    pub server_slots: u16,
}

impl Default for MigratorConfig {
    fn default() -> Self {
        MigratorConfig {
            concurrency: 64,
            server_slots: 16,
        }
    }
}

/// The separator between `TENANCY_NAMESPACE` and a name: `<namespace>.<name>`.
pub const NAMESPACE_SEPARATOR: char = '.';

/// `TENANCY_NAMESPACE`: empty, or up to 64 of `a-z 0-9 _ - .` that neither starts nor ends with
/// the separator (which the services add themselves: `acme` gives `acme.tenancy.events`).
fn check_namespace(namespace: &str) -> Result<(), String> {
    let charset_ok = namespace.len() <= 64
        && namespace.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if !charset_ok {
        return Err(format!(
            "TENANCY_NAMESPACE: {namespace:?} may only hold up to 64 of a-z, 0-9, `_`, `-` and `.`"
        ));
    }
    let trimmed = namespace.trim_matches(NAMESPACE_SEPARATOR);
    if trimmed.len() != namespace.len() {
        let would = |name: &str| format!("{namespace}{NAMESPACE_SEPARATOR}{name}");
        let suggestion = if trimmed.is_empty() {
            "leave it empty".to_owned()
        } else {
            format!(
                "use `{trimmed}` (names become `{trimmed}{NAMESPACE_SEPARATOR}tenancy.events`, …)"
            )
        };
        return Err(format!(
            "TENANCY_NAMESPACE: `{namespace}` starts or ends with `{NAMESPACE_SEPARATOR}`, the separator the services add themselves: names would be `{}`, `{}`, …; {suggestion}",
            would("tenancy.events"),
            would("provisioner.tenant-registered"),
        ));
    }
    Ok(())
}

/// `TENANT_OWNER_ROLE`: a plain PostgreSQL role name (it goes into the connection's start-up
/// options, where quoting is not available).
fn check_role_name(role: &str) -> Result<(), String> {
    let mut bytes = role.bytes();
    let plain = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && role.len() <= 63;
    if plain {
        Ok(())
    } else {
        Err(format!(
            "TENANT_OWNER_ROLE: {role:?} is not a plain role name (up to 63 of a-z, 0-9 and `_`, not starting with a digit), e.g. tenancy_tenants"
        ))
    }
}

/// Everything wrong with a configuration, listed together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tenancy";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_HEALTH_ADDR: &str = "127.0.0.1:8080";

impl Config {
    /// How tenant sessions connect to the tenant server: `TENANT_DATABASE_URL`, running as
    /// `TENANT_OWNER_ROLE` when set (`SET ROLE` in the start-up options, so every object a
    /// migration creates belongs to the tenants' owner, whichever service ran it). `None` when
    /// the tenant server is not PostgreSQL.
    pub fn tenant_session_options(&self) -> Option<sqlx::postgres::PgConnectOptions> {
        let DatabaseUrl::Postgres { options, .. } = &self.tenant_database_url else {
            return None;
        };
        Some(self.tenant_session_options_on(options))
    }

    /// Tenant sessions on `server`, any tenant server: as [`Config::tenant_session_options`].
    pub fn tenant_session_options_on(
        &self,
        server: &sqlx::postgres::PgConnectOptions,
    ) -> sqlx::postgres::PgConnectOptions {
        let options = server.clone();
        match &self.tenant_owner_role {
            Some(owner) => options.options([("role", owner.as_str())]),
            None => options,
        }
    }

    /// Reads the process environment.
    ///
    /// # Errors
    /// See [`Config::from_lookup`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup` (an empty value counts as unset).
    ///
    /// # Errors
    /// Every invalid value, listed in one error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();

        let database_raw = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let database_url = DatabaseUrl::parse("DATABASE_URL", &database_raw)
            .map_err(|e| problems.push(e))
            .ok();
        let tenant_database_url = match get("TENANT_DATABASE_URL") {
            Some(raw) => DatabaseUrl::parse("TENANT_DATABASE_URL", &raw)
                .map_err(|e| problems.push(e))
                .ok(),
            None => database_url.clone(),
        };
        let tenant_isolation = get("TENANT_ISOLATION")
            .map_or(Ok(Isolation::Schema), |v| v.parse())
            .map_err(|e| problems.push(format!("TENANT_ISOLATION: {e}")))
            .ok();

        let tenant_owner_role = get("TENANT_OWNER_ROLE").map(|role| role.trim().to_owned());
        if let Some(role) = &tenant_owner_role
            && let Err(problem) = check_role_name(role)
        {
            problems.push(problem);
        }

        let amqp_url =
            SecretUrl::new(get("AMQP_URL").unwrap_or_else(|| DEFAULT_AMQP_URL.to_owned()));
        for node in amqp_url.nodes() {
            if !(node.expose().starts_with("amqp://") || node.expose().starts_with("amqps://")) {
                problems.push(format!(
                    "AMQP_URL: `{node}` must start with amqp:// or amqps:// (several nodes: amqp://…,amqp://…)"
                ));
            } else if let Err(reason) = node.expose().parse::<lapin::uri::AMQPUri>() {
                problems.push(format!(
                    "AMQP_URL: `{node}` is not a valid AMQP URL: {reason}"
                ));
            }
        }

        let namespace = get("TENANCY_NAMESPACE").unwrap_or_default();
        if let Err(problem) = check_namespace(&namespace) {
            problems.push(problem);
        }

        let migrations_dir = get("MIGRATIONS_DIR").map(PathBuf::from);
        if let Some(dir) = &migrations_dir
            && !dir.is_dir()
        {
            problems.push(format!(
                "MIGRATIONS_DIR: {} is not a directory",
                dir.display()
            ));
        }

        let health_addr = get("HEALTH_ADDR")
            .unwrap_or_else(|| DEFAULT_HEALTH_ADDR.to_owned())
            .parse::<std::net::SocketAddr>()
            .map_err(|e| {
                problems.push(format!(
                    "HEALTH_ADDR: {e} (expected an address such as 0.0.0.0:8080)"
                ))
            })
            .ok();
        let telemetry = TelemetrySettings::from_lookup(&lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();

        let mut count = |key: &str, default: u16| -> u16 {
            match get(key).map(|v| v.trim().parse::<u16>()) {
                None => default,
                Some(Ok(n)) if (1..=1024).contains(&n) => n,
                Some(_) => {
                    problems.push(format!("{key}: must be a whole number from 1 to 1024"));
                    default
                }
            }
        };
        let migrator = MigratorConfig {
            concurrency: count(
                "MIGRATOR_CONCURRENCY",
                MigratorConfig::default().concurrency,
            ),
            server_slots: count(
                "MIGRATOR_SERVER_SLOTS",
                MigratorConfig::default().server_slots,
            ),
        };

        let provisioner = ProvisionerConfig {
            templates: match get("PROVISIONER_TEMPLATES").map(|v| v.trim().to_ascii_lowercase()) {
                None => ProvisionerConfig::default().templates,
                Some(v) if v == "on" => true,
                Some(v) if v == "off" => false,
                Some(v) => {
                    problems.push(format!(
                        "PROVISIONER_TEMPLATES: `{v}` must be `on` or `off`"
                    ));
                    ProvisionerConfig::default().templates
                }
            },
        };

        match (
            database_url,
            tenant_database_url,
            tenant_isolation,
            health_addr,
            telemetry,
        ) {
            (
                Some(database_url),
                Some(tenant_database_url),
                Some(tenant_isolation),
                Some(health_addr),
                Some(TelemetrySettings { otel, log_format }),
            ) if problems.is_empty() => Ok(Config {
                database_url,
                tenant_database_url,
                tenant_isolation,
                tenant_owner_role,
                amqp_url,
                namespace,
                migrations_dir,
                otel,
                health_addr,
                log_format,
                migrator,
                provisioner,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn provisioner_templates_are_on_unless_turned_off() {
        let templates = |pairs: &[(&str, &str)]| config(pairs).map(|c| c.provisioner.templates);
        assert_eq!(templates(&[]).ok(), Some(true));
        assert_eq!(
            templates(&[("PROVISIONER_TEMPLATES", "off")]).ok(),
            Some(false)
        );
        assert_eq!(
            templates(&[("PROVISIONER_TEMPLATES", " ON ")]).ok(),
            Some(true)
        );
        let problems = templates(&[("PROVISIONER_TEMPLATES", "yes")])
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert_eq!(
            problems,
            ["PROVISIONER_TEMPLATES: `yes` must be `on` or `off`"]
        );
    }

    #[test]
    fn the_tenants_owner_is_a_plain_role_name_set_at_connection_start() {
        let owned =
            config(&[("TENANT_OWNER_ROLE", "tenancy_tenants")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(owned.tenant_owner_role.as_deref(), Some("tenancy_tenants"));
        let options = owned
            .tenant_session_options()
            .unwrap_or_else(|| panic!("a PostgreSQL tenant server"));
        assert_eq!(options.get_options(), Some("-c role=tenancy_tenants"));
        assert_eq!(
            config(&[]).map(|c| c.tenant_owner_role).ok(),
            Some(None),
            "unset: the connecting user owns the tenants"
        );
        for bad in ["Tenants", "1owner", "owner; DROP", "a b"] {
            let problems = config(&[("TENANT_OWNER_ROLE", bad)])
                .err()
                .map(|e| e.problems)
                .unwrap_or_default();
            assert!(
                problems.iter().any(|p| p.starts_with("TENANT_OWNER_ROLE")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn amqp_url_may_list_the_nodes_of_a_cluster_each_shown_without_its_password() {
        let list = "amqp://svc:s3cret@mq-0:5672/tenancy,amqps://svc:s3cret@mq-1:5671/tenancy, amqp://svc:p,w@mq-2/tenancy";
        let nodes = SecretUrl::new(list).nodes();
        let shown: Vec<String> = nodes.iter().map(SecretUrl::redacted).collect();
        assert_eq!(
            shown,
            [
                "amqp://svc:***@mq-0:5672/tenancy",
                "amqps://svc:***@mq-1:5671/tenancy",
                "amqp://svc:***@mq-2/tenancy"
            ],
            "a comma inside a password does not split a node"
        );
        let whole = SecretUrl::new(list).redacted();
        assert!(
            !whole.contains("s3cret") && !whole.contains("p,w"),
            "{whole}"
        );
        assert_eq!(
            SecretUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f")
                .nodes()
                .len(),
            1
        );

        let configured = config(&[("AMQP_URL", list)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(configured.amqp_url.nodes().len(), 3);
        let problems = config(&[("AMQP_URL", "amqp://svc:s3cret@mq-0/tenancy,http://mq-1")])
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("http://mq-1") && p.contains("amqp://")),
            "{problems:?}"
        );
        assert!(
            problems.iter().all(|p| !p.contains("s3cret")),
            "{problems:?}"
        );
    }

    #[test]
    fn log_format_parses_the_three_values() {
        for (raw, expected) in [
            ("auto", LogFormat::Auto),
            ("", LogFormat::Auto),
            (" Human ", LogFormat::Human),
            ("JSON", LogFormat::Json),
            ("json", LogFormat::Json),
        ] {
            assert_eq!(raw.parse::<LogFormat>(), Ok(expected), "{raw:?}");
        }
        let error = "yaml".parse::<LogFormat>().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("`yaml` is not a log format: use `auto`, `human` or `json`")
        );
        assert_eq!(LogFormat::Json.resolve(), LogFormat::Json);
        assert_ne!(LogFormat::Auto.resolve(), LogFormat::Auto);
        assert_eq!(LogFormat::Human.to_string(), "human");
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = config(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.database_url.redacted(), DEFAULT_DATABASE_URL);
        assert_eq!(config.tenant_database_url.redacted(), DEFAULT_DATABASE_URL);
        assert_eq!(config.tenant_isolation, Isolation::Schema);
        assert_eq!(
            config.amqp_url.redacted(),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(config.namespace, "");
        assert_eq!(config.migrations_dir, None);
    }

    #[test]
    fn lists_every_problem_at_once() {
        let err = config(&[
            ("DATABASE_URL", "mysql://x"),
            ("TENANT_ISOLATION", "row"),
            ("AMQP_URL", "http://x"),
            ("TENANCY_NAMESPACE", "Bad Namespace"),
        ])
        .err()
        .map(|e| e.problems.len());
        assert_eq!(err, Some(4));
    }

    #[test]
    fn passwords_never_show() {
        let url = SecretUrl::new("postgres://app:s3cret@db.example:5432/tenancy");
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db.example:5432/tenancy"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let err = config(&[("DATABASE_URL", "mysql://app:s3cret@x/db")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn credentials_in_the_query_never_show() {
        for (url, secret) in [
            (
                "postgres://app@db.example/tenancy?password=s3cret",
                "s3cret",
            ),
            (
                "postgres://db.example/tenancy?sslmode=require&PassWord=s3cret&application_name=x",
                "s3cret",
            ),
            ("postgres://db.example/tenancy?sslpassword=s3cret", "s3cret"),
            ("postgres://db.example/tenancy?pass%77ord=s3cret", "s3cret"),
            (
                "amqps://rabbit.example/%2f?auth_token=s3cret#frag",
                "s3cret",
            ),
            ("https://otlp.example:4318?api_key=s3cret", "s3cret"),
            ("postgres://app:p%40ss@db.example?password=s3cret", "p%40ss"),
        ] {
            let shown = SecretUrl::new(url).redacted();
            assert!(!shown.contains(secret), "{url} shown as {shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            SecretUrl::new("postgres://app:x@db.example:5432/t?sslmode=require&password=y")
                .redacted(),
            "postgres://app:***@db.example:5432/t?sslmode=require&password=***"
        );
        let config = config(&[(
            "DATABASE_URL",
            "postgres://db.example/tenancy?password=s3cret",
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.database_url.redacted().contains("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn a_namespace_never_ends_with_the_separator() {
        let err = config(&[("TENANCY_NAMESPACE", "acme.")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("acme..tenancy.events") && err.contains("use `acme`"),
            "{err}"
        );
        assert!(config(&[("TENANCY_NAMESPACE", ".acme")]).is_err());
        assert!(config(&[("TENANCY_NAMESPACE", "acme.eu")]).is_ok());
        assert!(config(&[("TENANCY_NAMESPACE", "t-1_a")]).is_ok());
    }

    #[test]
    fn sqlite_platform_databases_are_files() {
        let config = config(&[("DATABASE_URL", "sqlite://data/platform.sqlite3")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(config.database_url, DatabaseUrl::Sqlite { ref path } if path == &PathBuf::from("data/platform.sqlite3"))
        );
        assert!(self::config(&[("DATABASE_URL", "sqlite::memory:")]).is_err());
    }
}
