//! Names the readiness mechanism of the target OS, so the code can say `#[cfg(epoll)]` or
//! `#[cfg(kqueue)]` instead of repeating lists of operating systems.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(epoll)");
    println!("cargo::rustc-check-cfg=cfg(kqueue)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match os.as_str() {
        "linux" | "android" => println!("cargo::rustc-cfg=epoll"),
        "macos" | "ios" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo::rustc-cfg=kqueue")
        }
        _ => {}
    }
}
