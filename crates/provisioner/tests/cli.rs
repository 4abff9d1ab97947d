//! `provisioner --help` and `--version` answer without starting the service: nothing connects, even
//! with every server unreachable.

use testkit::service_cli::ServiceBinary;

const SERVICE: ServiceBinary<'static> = ServiceBinary {
    path: env!("CARGO_BIN_EXE_provisioner"),
    name: "provisioner",
    version: env!("CARGO_PKG_VERSION"),
};

#[test]
fn help_describes_the_service_and_its_environment_without_connecting() {
    SERVICE.assert_help();
}

#[test]
fn version_prints_the_version_without_connecting() {
    SERVICE.assert_version();
}

#[test]
fn an_unknown_flag_is_refused_without_connecting() {
    SERVICE.assert_refuses_unknown_flags();
}
