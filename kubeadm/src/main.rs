//! The kubeadm binary: parses the command line and runs it.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = <kubeadm::cmd::Cli as clap::Parser>::parse();
    if let Err(e) = kubeadm::cmd::run(cli).await {
        eprintln!("{e}");
        eprintln!("To see the stack trace of this error execute with --v=5 or higher");
        std::process::exit(1);
    }
}
