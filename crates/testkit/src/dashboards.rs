//! The shipped Grafana dashboards as data, for tests: every panel target with its query
//! ready to evaluate, and what each dashboard references.
//!
//! [`load`] reads every `*.json` of a directory (`deploy/grafana/dashboards`, see
//! [`shipped_dashboards_dir`]). A [`Dashboard`] gives its [`PanelTarget`]s (dashboard, panel
//! title, data-source uid, PromQL or SQL as written and as evaluated), its template variables,
//! the data-source uids and the variable names it references anywhere. "As evaluated" means with
//! Grafana's variables replaced as a test can run them: `$__rate_interval` and `$__interval`
//! by [`RATE_INTERVAL`], the SQL macros `$__timeFilter(col)`, `$__timeFrom()` and `$__timeTo()`
//! by the last [`SQL_TIME_RANGE`], and each template variable by its value for "All" (`allValue`,
//! else `.*`), or its first custom option.
//!
//! [`provisioned_datasources`] reads the uids and types of a Grafana data-source provisioning
//! file (the simple YAML that file is: one list entry per data source).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What `$__rate_interval` and `$__interval` become: four scrapes of the tests' 1 s Prometheus
/// fit in it many times, and it is a range any `rate` accepts.
pub const RATE_INTERVAL: &str = "1m";
/// The time range `$__timeFilter` stands for in evaluated SQL (a PostgreSQL interval).
pub const SQL_TIME_RANGE: &str = "1 hour";

/// `deploy/grafana/dashboards` of this workspace.
pub fn shipped_dashboards_dir() -> PathBuf {
    crate::workspace_path("deploy/grafana/dashboards")
}

/// One dashboard file.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub file: PathBuf,
    pub uid: String,
    pub title: String,
    pub variables: Vec<Variable>,
    pub targets: Vec<PanelTarget>,
    /// The whole JSON, for checks this module does not foresee.
    pub json: Value,
}

/// A template variable (`templating.list[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// `query`, `custom`, `constant`, `textbox`, `interval`, …
    pub kind: String,
    /// What the variable is replaced by for evaluation.
    pub value: String,
}

/// One query of one panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelTarget {
    /// The dashboard's title.
    pub dashboard: String,
    pub panel: String,
    /// The target's data source, else its panel's.
    pub datasource_uid: String,
    pub query: PanelQuery,
}

/// A target's query, as written in the dashboard and as evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelQuery {
    Prometheus { raw: String, expr: String },
    Sql { raw: String, sql: String },
}

impl PanelQuery {
    /// The query with variables replaced (PromQL or SQL).
    pub fn evaluated(&self) -> &str {
        match self {
            PanelQuery::Prometheus { expr, .. } => expr,
            PanelQuery::Sql { sql, .. } => sql,
        }
    }

    /// The query as the dashboard has it.
    pub fn raw(&self) -> &str {
        match self {
            PanelQuery::Prometheus { raw, .. } | PanelQuery::Sql { raw, .. } => raw,
        }
    }
}

impl std::fmt::Display for PanelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {} ({}): {}",
            self.dashboard,
            self.panel,
            self.datasource_uid,
            self.query.raw()
        )
    }
}

/// Every dashboard in `dir` (its `*.json` files, by file name); panics on a file that is not a
/// dashboard, naming it.
pub fn load(dir: &Path) -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading dashboards in {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files.iter().map(|file| Dashboard::read(file)).collect()
}

/// Every panel target of every dashboard in `dir`.
pub fn all_targets(dir: &Path) -> Vec<PanelTarget> {
    load(dir).into_iter().flat_map(|d| d.targets).collect()
}

impl Dashboard {
    /// Reads one dashboard file; panics naming the file if it is not a dashboard.
    pub fn read(file: &Path) -> Dashboard {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        Dashboard::from_json(file, json)
    }

    /// A dashboard from its JSON (`file` is only for messages).
    pub fn from_json(file: &Path, json: Value) -> Dashboard {
        let title = json["title"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: a dashboard needs a title", file.display()))
            .to_owned();
        let variables = json["templating"]["list"]
            .as_array()
            .map(|list| list.iter().map(variable).collect())
            .unwrap_or_default();
        let mut dashboard = Dashboard {
            file: file.to_owned(),
            uid: json["uid"].as_str().unwrap_or_default().to_owned(),
            title,
            variables,
            targets: Vec::new(),
            json: Value::Null,
        };
        let mut panels = Vec::new();
        collect_panels(&json["panels"], &mut panels);
        for panel in panels {
            let panel_title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let datasource_uid = datasource_uid(&target["datasource"])
                    .or_else(|| datasource_uid(&panel["datasource"]))
                    .unwrap_or_default();
                let query = if let Some(expr) = target["expr"].as_str() {
                    PanelQuery::Prometheus {
                        raw: expr.to_owned(),
                        expr: dashboard.substitute(expr),
                    }
                } else if let Some(sql) = target["rawSql"].as_str() {
                    PanelQuery::Sql {
                        raw: sql.to_owned(),
                        sql: dashboard.substitute(sql),
                    }
                } else {
                    panic!(
                        "{}: panel {panel_title:?} has a target with neither expr nor rawSql",
                        file.display()
                    )
                };
                dashboard.targets.push(PanelTarget {
                    dashboard: dashboard.title.clone(),
                    panel: panel_title.to_owned(),
                    datasource_uid,
                    query,
                });
            }
        }
        dashboard.json = json;
        dashboard
    }

    /// The uid of every data source referenced anywhere (panels, targets, variables).
    pub fn datasource_uids(&self) -> BTreeSet<String> {
        let mut uids = BTreeSet::new();
        walk(&self.json, &mut |key, value| {
            if key == Some("datasource")
                && let Some(uid) = datasource_uid(value)
            {
                uids.insert(uid);
            }
        });
        uids
    }

    /// The name of every variable referenced in any string (`$name`, `${name}`,
    /// `${name:format}`, `[[name]]`), Grafana's own (`__…`) left out.
    pub fn variable_references(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        walk(&self.json, &mut |_, value| {
            if let Some(text) = value.as_str() {
                names.extend(
                    variable_references(text)
                        .into_iter()
                        .filter(|name| !name.starts_with("__")),
                );
            }
        });
        names
    }

    /// `text` with Grafana's variables and SQL macros replaced (see the module doc).
    pub fn substitute(&self, text: &str) -> String {
        let range = format!("now() - interval '{SQL_TIME_RANGE}'");
        let mut text = replace_sql_macro(text, "$__timeFilter(", |column| {
            format!("{column} BETWEEN {range} AND now()")
        });
        text = text
            .replace("$__timeFrom()", &range)
            .replace("$__timeTo()", "now()");
        for builtin in ["__rate_interval", "__interval"] {
            text = replace_variable(&text, builtin, RATE_INTERVAL);
        }
        for variable in &self.variables {
            text = replace_variable(&text, &variable.name, &variable.value);
        }
        text
    }
}

/// The data sources a provisioning file defines: `(uid, type)` of each list entry.
pub fn provisioned_datasources(file: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let mut entries: Vec<(String, String)> = Vec::new();
    // The column of an entry's keys: `  - name: x` puts them at the column after `- `.
    let mut key_column = None;
    for line in text.lines() {
        let content = line.trim_start();
        if content.starts_with('#') || content.is_empty() {
            continue;
        }
        let column = line.len() - content.len();
        let (column, content) = match content.strip_prefix("- ") {
            Some(rest) if key_column.is_none_or(|c| column < c) => {
                entries.push((String::new(), String::new()));
                (column + 2, rest.trim_start())
            }
            _ => (column, content),
        };
        if entries.is_empty() {
            continue;
        }
        if key_column.is_none() {
            key_column = Some(column);
        }
        if Some(column) != key_column {
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        if let Some(uid) = content.strip_prefix("uid:") {
            entry.0 = unquote(uid);
        } else if let Some(kind) = content.strip_prefix("type:") {
            entry.1 = unquote(kind);
        }
    }
    entries
}

/// `data-source uid` of `{"uid": …}`, or of a plain string (old dashboards name it so).
fn datasource_uid(value: &Value) -> Option<String> {
    match value {
        Value::String(uid) => Some(uid.clone()),
        Value::Object(map) => map.get("uid")?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn variable(json: &Value) -> Variable {
    let name = json["name"].as_str().unwrap_or_default().to_owned();
    let kind = json["type"].as_str().unwrap_or_default().to_owned();
    let value = if json["includeAll"].as_bool() == Some(true) {
        json["allValue"].as_str().unwrap_or(".*").to_owned()
    } else if matches!(
        kind.as_str(),
        "custom" | "constant" | "textbox" | "interval"
    ) {
        json["query"]
            .as_str()
            .and_then(|q| q.split(',').next())
            .map(|first| first.trim().to_owned())
            .unwrap_or_else(|| ".*".to_owned())
    } else {
        ".*".to_owned()
    };
    Variable { name, kind, value }
}

/// Panels, with those inside rows.
fn collect_panels<'a>(panels: &'a Value, into: &mut Vec<&'a Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        into.push(panel);
        collect_panels(&panel["panels"], into);
    }
}

/// Calls `visit(key, value)` for every value in `json` (key is `None` inside arrays).
fn walk(json: &Value, visit: &mut impl FnMut(Option<&str>, &Value)) {
    match json {
        Value::Object(map) => {
            for (key, value) in map {
                visit(Some(key), value);
                walk(value, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                visit(None, item);
                walk(item, visit);
            }
        }
        _ => {}
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Variable names referenced in `text`.
fn variable_references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['$', '[']) {
        let after = &rest[at + 1..];
        let name = if rest[at..].starts_with("${") {
            after[1..].split(['}', ':']).next().unwrap_or_default()
        } else if rest[at..].starts_with("[[") {
            after[1..].split("]]").next().unwrap_or_default()
        } else if rest[at..].starts_with('$') {
            let end = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
            &after[..end]
        } else {
            ""
        };
        let starts_like_a_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if starts_like_a_name && name.chars().all(is_name_char) {
            names.push(name.to_owned());
        }
        rest = after;
    }
    names
}

/// Replaces `$name`, `${name}`, `${name:format}` and `[[name]]` by `value`; `$name` only
/// when no other name character follows (`$status` is not `$statuses`).
fn replace_variable(text: &str, name: &str, value: &str) -> String {
    let mut text = text.replace(&format!("${{{name}}}"), value);
    text = text.replace(&format!("[[{name}]]"), value);
    while let Some(at) = text.find(&format!("${{{name}:")) {
        let Some(end) = text[at..].find('}') else {
            break;
        };
        text.replace_range(at..at + end + 1, value);
    }
    let plain = format!("${name}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&plain) {
        let after = &rest[at + plain.len()..];
        out.push_str(&rest[..at]);
        if after.starts_with(is_name_char) {
            out.push_str(&plain);
        } else {
            out.push_str(value);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Replaces each `macro_open<args>)` by `expand(args)`.
fn replace_sql_macro(text: &str, macro_open: &str, expand: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(macro_open) {
        let args_start = at + macro_open.len();
        let Some(close) = rest[args_start..].find(')') else {
            break;
        };
        out.push_str(&rest[..at]);
        out.push_str(&expand(rest[args_start..args_start + close].trim()));
        rest = &rest[args_start + close + 1..];
    }
    out.push_str(rest);
    out
}

fn unquote(value: &str) -> String {
    value
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dashboard(json: Value) -> Dashboard {
        Dashboard::from_json(Path::new("test.json"), json)
    }

    #[test]
    fn targets_come_with_their_data_source_and_variables_replaced() {
        let d = dashboard(serde_json::json!({
            "title": "T",
            "templating": {"list": [
                {"name": "service", "type": "query", "includeAll": true, "allValue": ".*"},
                {"name": "step", "type": "custom", "query": "register,seed"}
            ]},
            "panels": [
                {"type": "row", "title": "r", "panels": [
                    {"title": "p", "datasource": {"uid": "prometheus"}, "targets": [
                        {"expr": "rate(x{s=~\"$service\", t=\"${step}\"}[$__rate_interval])"}]}
                ]},
                {"title": "q", "datasource": {"uid": "prometheus"}, "targets": [
                    {"datasource": {"uid": "platform"},
                     "rawSql": "SELECT 1 FROM d WHERE $__timeFilter(d.created_at) AND [[step]] = 'x'"}]}
            ]
        }));
        assert_eq!(d.targets.len(), 2);
        assert_eq!(d.targets[0].panel, "p");
        assert_eq!(d.targets[0].datasource_uid, "prometheus");
        assert_eq!(
            d.targets[0].query.evaluated(),
            "rate(x{s=~\".*\", t=\"register\"}[1m])"
        );
        assert_eq!(d.targets[1].datasource_uid, "platform");
        assert_eq!(
            d.targets[1].query.evaluated(),
            "SELECT 1 FROM d WHERE d.created_at BETWEEN now() - interval '1 hour' AND now() AND register = 'x'"
        );
        assert_eq!(
            d.datasource_uids(),
            BTreeSet::from(["platform".to_owned(), "prometheus".to_owned()])
        );
        assert_eq!(
            d.variable_references(),
            BTreeSet::from(["service".to_owned(), "step".to_owned()])
        );
    }

    #[test]
    fn references_skip_grafana_builtins_and_non_names() {
        assert_eq!(
            variable_references("a $x ${y:regex} [[z]] ${__from} $__rate_interval $1 {{queue}} x$"),
            ["x", "y", "z", "__from", "__rate_interval"]
        );
    }

    #[test]
    fn a_variable_is_not_replaced_inside_a_longer_name() {
        assert_eq!(
            replace_variable("$status $statuses", "status", "a"),
            "a $statuses"
        );
    }

    #[test]
    fn provisioned_datasources_read_each_entrys_own_keys() {
        let dir = crate::ScratchDir::new();
        let file = dir.path().join("ds.yaml");
        std::fs::write(
            &file,
            "apiVersion: 1\ndatasources:\n  - name: P\n    uid: prometheus\n    type: prometheus\n    jsonData:\n      exemplarTraceIdDestinations:\n        - name: t\n          datasourceUid: tempo\n  - name: Pg\n    type: postgres\n    uid: \"platform\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            provisioned_datasources(&file),
            [
                ("prometheus".to_owned(), "prometheus".to_owned()),
                ("platform".to_owned(), "postgres".to_owned())
            ]
        );
    }
}
