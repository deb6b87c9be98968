//! Generates the protobuf entry type the log store benchmark gives raft-engine
//! (pure Rust codegen: no protoc needed).

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    protobuf_codegen_pure::Codegen::new()
        .out_dir(&out)
        .include("proto")
        .input("proto/bench_entry.proto")
        .run()
        .expect("generating the benchmark's protobuf code");
    // The generated file starts with inner attributes and inner doc comments,
    // which `include!` cannot take inside a module: drop them.
    let path = std::path::Path::new(&out).join("bench_entry.rs");
    let code = std::fs::read_to_string(&path).expect("generated file");
    let kept: Vec<&str> = code
        .lines()
        .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
        .collect();
    std::fs::write(&path, kept.join("\n")).expect("rewriting generated file");
    println!("cargo:rerun-if-changed=proto/bench_entry.proto");
}
