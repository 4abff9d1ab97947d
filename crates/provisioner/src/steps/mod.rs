//! The six steps, one file each. Every step is idempotent: run twice, it changes nothing the
//! second time (the driver re-runs a step whose record was lost).

mod activate;
mod admin_user;
mod create_storage;
mod migrate;
mod register;
mod seed;

use domain::provisioning::Step;

use crate::port::{Request, StepError};
use crate::provisioner::Provisioner;

pub(crate) async fn run(
    provisioner: &Provisioner,
    step: Step,
    request: &Request,
) -> Result<(), StepError> {
    match step {
        Step::Register => register::run(provisioner, request).await,
        Step::CreateStorage => create_storage::run(provisioner, request).await,
        Step::Migrate => migrate::run(provisioner, request).await,
        Step::Seed => seed::run(provisioner, request).await,
        Step::AdminUser => admin_user::run(provisioner, request).await,
        Step::Activate => activate::run(provisioner, request).await,
    }
}
