//! `agnhost`: the webhook servers of upstream's e2e test image, for the image `deploy/images/build.sh` builds
//! under upstream's name (see [`e2e::agnhost`]).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match e2e::agnhost::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agnhost: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let result = match rt {
        Ok(rt) => rt.block_on(e2e::agnhost::serve(cmd)),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        eprintln!("agnhost: {e}");
        std::process::exit(1);
    }
}
