use anyhow::Context;
use erp_service::{Application, Settings};

fn main() -> anyhow::Result<()> {
    tandem_common::runtime::block_on(run())?
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading ERP settings")?;
    let _telemetry = tandem_common::telemetry::init("erp-service", &settings.telemetry)?;
    let shutdown = tandem_common::shutdown::on_signal();
    let app = Application::build(settings)
        .await
        .context("starting the ERP")?;
    app.run_until_stopped(shutdown)
        .await
        .context("running the ERP")
}
