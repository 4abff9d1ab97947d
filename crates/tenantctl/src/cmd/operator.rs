//! Who operates: the handle recorded with a deploy, a rollback, a replay or a retry, and in the
//! audit trail.

/// The operator recorded with a deploy and in the audit trail: a handle, never an email
/// address. `--operator`, else `TENANCY_OPERATOR` (jobs and containers, where `USER` is
/// unset), else `USER`, else `LOGNAME`.
pub fn handle(given: Option<String>) -> anyhow::Result<String> {
    resolve_operator(given, |name| std::env::var(name).ok())
}

/// [`handle`] with the environment passed in.
fn resolve_operator(
    given: Option<String>,
    environment: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let set = |name: &'static str| {
        environment(name)
            .filter(|value| !value.is_empty())
            .map(|value| (name, value))
    };
    let (source, operator) = given
        .map(|value| ("--operator", value))
        .or_else(|| set("TENANCY_OPERATOR"))
        .or_else(|| set("USER"))
        .or_else(|| set("LOGNAME"))
        .unwrap_or(("--operator", String::new()));
    anyhow::ensure!(
        !operator.is_empty(),
        "who is operating? pass --operator HANDLE or set TENANCY_OPERATOR (USER and LOGNAME are not set either, so it cannot be taken from the environment)"
    );
    let valid = operator.len() <= 64
        && operator
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    anyhow::ensure!(
        valid,
        "{source} must be a handle of up to 64 letters, digits, `.`, `_` or `-` (not an email address)"
    );
    Ok(operator)
}

#[cfg(test)]
mod tests {
    use super::resolve_operator;

    #[test]
    fn the_operator_is_a_handle_from_the_flag_or_the_environment() {
        let none = |_: &str| None;
        let user = |name: &str| (name == "USER").then(|| "sre-ana".to_owned());
        assert_eq!(
            resolve_operator(Some("bruno".into()), user).ok(),
            Some("bruno".into())
        );
        assert_eq!(resolve_operator(None, user).ok(), Some("sre-ana".into()));
        let missing = resolve_operator(None, none).err().map(|e| e.to_string());
        assert!(
            missing
                .as_deref()
                .is_some_and(|m| m.contains("pass --operator")),
            "{missing:?}"
        );
        let email = resolve_operator(Some("ana@example.com".into()), none)
            .err()
            .map(|e| e.to_string());
        assert!(
            email
                .as_deref()
                .is_some_and(|m| m.contains("not an email address")),
            "{email:?}"
        );
    }

    #[test]
    fn tenancy_operator_comes_after_the_flag_and_before_user_and_logname() {
        let job = |name: &str| match name {
            "TENANCY_OPERATOR" => Some("release-bot".to_owned()),
            "USER" => Some("root".to_owned()),
            "LOGNAME" => Some("root".to_owned()),
            _ => None,
        };
        assert_eq!(
            resolve_operator(Some("sre-ana".into()), job).ok(),
            Some("sre-ana".into())
        );
        assert_eq!(resolve_operator(None, job).ok(), Some("release-bot".into()));
        let container = |name: &str| (name == "TENANCY_OPERATOR").then(|| "ci.deploy".to_owned());
        assert_eq!(
            resolve_operator(None, container).ok(),
            Some("ci.deploy".into())
        );
        let logname = |name: &str| match name {
            "TENANCY_OPERATOR" | "USER" => Some(String::new()),
            "LOGNAME" => Some("bruno".to_owned()),
            _ => None,
        };
        assert_eq!(resolve_operator(None, logname).ok(), Some("bruno".into()));
        let email = |name: &str| (name == "TENANCY_OPERATOR").then(|| "ci@example.com".to_owned());
        let refused = resolve_operator(None, email).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.starts_with("TENANCY_OPERATOR must be a handle")),
            "{refused:?}"
        );
    }
}
