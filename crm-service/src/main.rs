use anyhow::Context;
use crm_service::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading CRM settings")?;
    let _telemetry = tandem_common::telemetry::init("crm-service", &settings.telemetry)?;
    let shutdown = tandem_common::shutdown::on_signal();
    let app = Application::build(settings)
        .await
        .context("starting the CRM")?;
    app.run_until_stopped(shutdown)
        .await
        .context("running the CRM")
}
