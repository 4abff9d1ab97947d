//! The image and the compose file against the code: every command they run exists, every
//! variable they set is one the services read, the image's toolchain is the pinned one and it
//! ships every binary of the workspace. (Docker itself cannot run where the tests run; these
//! checks are what can be verified without it.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repository().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The exec-form commands (`["tenantctl", "up"]`, `["CMD", "tenantctl", "healthcheck"]`) of a
/// Dockerfile or compose file that run `tenantctl`, as argument lists after `tenantctl`.
fn tenantctl_commands(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let list = &line[line.find('[')?..=line.rfind(']')?];
            let words: Vec<String> = serde_json::from_str(list).ok()?;
            let at = words.iter().position(|w| w == "tenantctl")?;
            Some(words[at + 1..].to_vec())
        })
        .collect()
}

#[test]
fn every_command_the_image_and_compose_run_exists() {
    let mut commands = tenantctl_commands(&read("deploy/Dockerfile"));
    commands.extend(tenantctl_commands(&read("docker-compose.yml")));
    let subcommands: Vec<&str> = commands
        .iter()
        .filter_map(|c| c.first().map(String::as_str))
        .collect();
    for wanted in ["up", "healthcheck", "setup", "deploy"] {
        assert!(
            subcommands.contains(&wanted),
            "no `tenantctl {wanted}` in {commands:?}"
        );
    }
    for command in &commands {
        let output = Command::new(env!("CARGO_BIN_EXE_tenantctl"))
            .args(command)
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success(),
            "`tenantctl {}` is not a command: {}",
            command.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_image_builds_with_the_pinned_toolchain_and_ships_every_binary() {
    let dockerfile = read("deploy/Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no channel in rust-toolchain.toml"));
    assert!(
        dockerfile.contains(&format!("FROM rust:{channel}-")),
        "the image's toolchain is not rust-toolchain.toml's {channel}"
    );
    let shipped: Vec<&str> = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("&& for binary in "))
        .and_then(|l| l.split_once(';'))
        .map(|(names, _)| names.split_whitespace().collect())
        .unwrap_or_else(|| panic!("no binary list in the Dockerfile"));
    let mut binaries: Vec<String> = std::fs::read_dir(repository().join("crates"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_string_lossy().into_owned();
            path.join("src/main.rs").exists().then_some(name)
        })
        .collect();
    binaries.sort();
    let mut shipped_sorted: Vec<String> = shipped.iter().map(|s| (*s).to_owned()).collect();
    shipped_sorted.sort();
    assert_eq!(
        shipped_sorted, binaries,
        "the image ships every binary, and only those"
    );
    assert!(
        dockerfile.contains("USER 10001"),
        "the image runs as a non-root user"
    );
    assert!(
        dockerfile.contains("strip /out/*"),
        "the binaries are stripped"
    );
    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target/"),
        "the build context leaves target/ out"
    );
}

/// `KEY=value` lines of an env file.
fn env_file(relative: &str) -> Vec<(String, String)> {
    read(relative)
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains('='))
        .filter_map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The compose file against the code and the least-privilege files: every variable a service is
/// given is one the code reads, every file mounted exists, every port is bound to 127.0.0.1, no
/// password is written in it, each service connects with a user of its own that
/// deploy/postgres/roles.sql and the definitions file create, and the development definitions
/// are the production ones with passwords.
#[test]
fn the_compose_stack_runs_each_service_with_its_own_users_and_what_the_code_has() {
    let compose_text = read("docker-compose.yml");
    let compose = yaml_documents(&repository().join("docker-compose.yml"))
        .pop()
        .unwrap_or_else(|| panic!("docker-compose.yml is empty"));
    let services = compose["services"]
        .as_object()
        .unwrap_or_else(|| panic!("no services"));
    let mut code = String::new();
    sources(&repository().join("crates"), &mut code);
    let roles_sql = read("deploy/postgres/roles.sql");
    let dev_users: Vec<String> = serde_json::from_str::<serde_json::Value>(&read(
        "deploy/compose/dev/rabbitmq-definitions.json",
    ))
    .unwrap_or_else(|e| panic!("{e}"))["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users"))
        .iter()
        .filter_map(|u| u["name"].as_str().map(str::to_owned))
        .collect();

    let ours = ["setup", "provisioner", "migrator", "auditor", "deploy"];
    let mut users = Vec::new();
    for name in ours {
        let service = &services[name];
        assert!(service.is_object(), "no service {name}");
        let mut variables: Vec<(String, String)> = service["environment"]
            .as_object()
            .map(|env| {
                env.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(file) = service["env_file"].as_str() {
            variables.extend(env_file(file));
        }
        for (variable, _) in &variables {
            assert!(
                code.contains(&format!("\"{variable}\"")),
                "{name} is given {variable}, which no code reads"
            );
        }
        let url = |key: &str| {
            variables
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} has no {key}"))
        };
        let user_of = |url: &str| -> String {
            let after = url.split_once("://").map_or("", |(_, rest)| rest);
            after
                .split([':', '@'])
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        let (role, user) = (user_of(&url("DATABASE_URL")), user_of(&url("AMQP_URL")));
        assert!(
            roles_sql.contains(&format!("('{role}', 'LOGIN')")),
            "{name} connects as {role}, which roles.sql does not create"
        );
        assert!(
            dev_users.contains(&user),
            "{name}: RabbitMQ user {user} is not defined"
        );
        users.push((role, user));
    }
    let mut distinct = users.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        users.len(),
        "each process has users of its own: {users:?}"
    );
    assert_eq!(services["migrator"]["deploy"]["replicas"], 2);
    assert_eq!(services["deploy"]["profiles"][0], "deploy");
    for name in ["otel-collector", "prometheus", "tempo", "grafana"] {
        assert!(
            services[name].is_object(),
            "the observability stack has {name}"
        );
    }

    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port.as_str().unwrap_or_default();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond this host"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume
                .as_str()
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default();
            if let Some(relative) = source.strip_prefix("./") {
                assert!(
                    repository().join(relative).exists(),
                    "{name} mounts a missing {source}"
                );
            }
        }
        if let Some(file) = service["env_file"].as_str() {
            assert!(
                file.starts_with("deploy/compose/dev/"),
                "{name}: secrets only in the development files"
            );
        }
    }
    for word in ["PASSWORD", "dev-only", "PGPASSWORD"] {
        assert!(
            !compose_text
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains(word)),
            "docker-compose.yml holds a password ({word}): it belongs in deploy/compose/dev/"
        );
    }

    // The development definitions are the production ones, passwords set.
    let strip = |text: &str| -> serde_json::Value {
        let mut value: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        for user in value["users"].as_array_mut().into_iter().flatten() {
            user["password_hash"] = serde_json::Value::Null;
        }
        value
    };
    assert_eq!(
        strip(&read("deploy/compose/dev/rabbitmq-definitions.json")),
        strip(&read("deploy/rabbitmq/definitions.json")),
        "deploy/compose/dev/rabbitmq-definitions.json differs from the production file beyond passwords"
    );
    let production: serde_json::Value =
        serde_json::from_str(&read("deploy/rabbitmq/definitions.json"))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        production["users"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|u| u["password_hash"] == ""),
        "the production definitions hold no password"
    );
}

/// Every `.rs` file under `dir`, concatenated: where the variables the services read are named.
fn sources(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}")));
        }
    }
}

/// The documents of a YAML file, as JSON (through Python's yaml, which kubernetes-validate
/// brings).
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(
        output.status.success(),
        "{}: {} (PyYAML comes with kubernetes-validate, which .ci/run installs)",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_kubernetes_manifests_validate_and_run_what_the_code_has() {
    let base = repository().join("deploy/kubernetes/base");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|path| path.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();

    // Against the Kubernetes schemas, unknown fields refused (KEDA's kinds have no schema there).
    let validated = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate ({e}): `pip install kubernetes-validate` (.ci/run does)")
        });
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // The kustomization lists every file of the base.
    let kustomization = yaml_documents(&base.join("kustomization.yaml"));
    let mut listed: Vec<String> = kustomization[0]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources"))
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    listed.sort();
    let mut present: Vec<String> = files
        .iter()
        .filter_map(|f| Some(f.file_name()?.to_string_lossy().into_owned()))
        .collect();
    present.sort();
    assert_eq!(
        listed, present,
        "kustomization.yaml lists every manifest of the base"
    );

    let mut code = String::new();
    for dir in ["crates/shared/src", "crates/tenantctl/src"] {
        sources(&repository().join(dir), &mut code);
    }
    let read_by_the_services = |name: &str| code.contains(&format!("\"{name}\""));
    let binaries = ["tenantctl", "provisioner", "migrator", "auditor"];
    let mut containers = 0;
    for file in &files {
        for document in yaml_documents(file) {
            if document["kind"] == "ConfigMap" {
                for key in document["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    assert!(
                        read_by_the_services(key),
                        "{}: {key} is read by no service",
                        file.display()
                    );
                }
            }
            // A CronJob's pod is one level further down, in its job template.
            let pod = if document["kind"] == "CronJob" {
                &document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            } else {
                &document["spec"]["template"]["spec"]
            };
            for container in pod["containers"].as_array().into_iter().flatten() {
                containers += 1;
                let command: Vec<&str> = container["command"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str())
                    .collect();
                let program = command.first().copied().unwrap_or_default();
                assert!(
                    binaries.contains(&program),
                    "{}: runs {program:?}, not a binary of the image",
                    file.display()
                );
                if program == "tenantctl" {
                    let help = Command::new(env!("CARGO_BIN_EXE_tenantctl"))
                        .args(&command[1..])
                        .arg("--help")
                        .output()
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(
                        help.status.success(),
                        "{}: `{}` is not a command",
                        file.display(),
                        command.join(" ")
                    );
                }
                let mut health_port = None;
                for variable in container["env"].as_array().into_iter().flatten() {
                    let name = variable["name"].as_str().unwrap_or_default();
                    assert!(
                        read_by_the_services(name),
                        "{}: {name} is read by no service",
                        file.display()
                    );
                    if name == "HEALTH_ADDR" {
                        health_port = variable["value"]
                            .as_str()
                            .and_then(|v| v.rsplit(':').next())
                            .and_then(|p| p.parse::<u64>().ok());
                    }
                }
                for probe in ["readinessProbe", "livenessProbe"] {
                    let path = container[probe]["httpGet"]["path"].as_str();
                    if let Some(path) = path {
                        assert!(
                            ["/readyz", "/healthz"].contains(&path),
                            "{}: probe {path}",
                            file.display()
                        );
                    }
                }
                if let Some(port) = container["ports"][0]["containerPort"].as_u64() {
                    assert_eq!(
                        health_port,
                        Some(port),
                        "{}: the container port is HEALTH_ADDR's",
                        file.display()
                    );
                    assert!(
                        container["readinessProbe"].is_object()
                            && container["livenessProbe"].is_object()
                    );
                }
            }
        }
    }
    assert!(containers >= 4, "three services and the deploy job");
}
