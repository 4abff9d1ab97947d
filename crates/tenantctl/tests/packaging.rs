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
    for wanted in ["up", "healthcheck"] {
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

#[test]
fn every_variable_the_compose_file_sets_is_read_by_the_services() {
    let compose = read("docker-compose.yml");
    let config = read("crates/shared/src/config.rs");
    let mut in_environment = false;
    let mut checked = 0;
    for line in compose.lines() {
        let trimmed = line.trim();
        if trimmed == "environment:" {
            in_environment = true;
            continue;
        }
        if in_environment {
            match trimmed.split_once(':') {
                Some((name, _)) if line.starts_with("      ") && !name.contains(' ') => {
                    // The services' own variables; the images of PostgreSQL and RabbitMQ read theirs.
                    if !name.starts_with("POSTGRES_") && !name.starts_with("RABBITMQ_") {
                        assert!(
                            config.contains(&format!("\"{name}\"")),
                            "docker-compose.yml sets {name}, which no service reads"
                        );
                        checked += 1;
                    }
                }
                _ => in_environment = false,
            }
        }
    }
    assert!(
        checked > 0,
        "no service variable found in docker-compose.yml"
    );
}
