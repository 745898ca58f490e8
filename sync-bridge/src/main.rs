use anyhow::Context;
use sync_bridge::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading bridge settings")?;
    let _telemetry = tandem_common::telemetry::init("sync-bridge", &settings.telemetry)?;
    let shutdown = tandem_common::shutdown::on_signal();
    let app = Application::build(settings)
        .await
        .context("starting the bridge")?;
    app.run_until_stopped(shutdown)
        .await
        .context("running the bridge")
}
