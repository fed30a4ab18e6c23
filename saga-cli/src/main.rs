//! `saga`: operate saga executions. Only `--version` exists until the operations issue.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("saga {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("usage: saga --version");
            std::process::exit(2);
        }
    }
}
