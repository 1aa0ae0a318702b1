//! Names the readiness mechanisms of the target OS, so the code can say `#[cfg(epoll)]` or
//! `#[cfg(kqueue)]` instead of repeating lists of operating systems.
//!
//! With the `libkqueue` feature a Linux build has both: epoll, and kqueue from libkqueue (a
//! userspace kqueue on epoll), found with `pkg-config libkqueue` and linked here.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(epoll)");
    println!("cargo::rustc-check-cfg=cfg(kqueue)");
    println!("cargo::rustc-check-cfg=cfg(libkqueue)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let want_libkqueue = std::env::var_os("CARGO_FEATURE_LIBKQUEUE").is_some();
    match os.as_str() {
        "linux" | "android" => {
            println!("cargo::rustc-cfg=epoll");
            if want_libkqueue {
                println!("cargo::rustc-cfg=kqueue");
                println!("cargo::rustc-cfg=libkqueue");
                link_libkqueue();
            }
        }
        "macos" | "ios" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo::rustc-cfg=kqueue")
        }
        _ => {}
    }
}

/// Links libkqueue as `pkg-config --libs libkqueue` says, with its directory as the run-time
/// search path too, so a PREFIX outside the loader's paths needs no LD_LIBRARY_PATH.
fn link_libkqueue() {
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    let output = Command::new("pkg-config")
        .args(["--libs", "libkqueue"])
        .output();
    let libs = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => panic!(
            "the libkqueue feature needs libkqueue: `pkg-config --libs libkqueue` failed: {} \
             (build it with ../shared/tools/build-libkqueue.sh PREFIX and set \
             PKG_CONFIG_PATH=PREFIX/lib/pkgconfig)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => panic!("the libkqueue feature needs pkg-config to find libkqueue: {err}"),
    };
    for flag in libs.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo::rustc-link-search=native={dir}");
            println!("cargo::rustc-link-arg=-Wl,-rpath,{dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo::rustc-link-lib=dylib={lib}");
        }
    }
}
