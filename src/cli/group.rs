//! `sluice group ...` — placeholder until the group CLI lands.
use clap::Args;

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
}

pub fn run(_args: GroupArgs) -> anyhow::Result<()> {
    anyhow::bail!("the group CLI is not built yet")
}
