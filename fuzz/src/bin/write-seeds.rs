//! Writes each target's seeds (`ramrod::fuzzing::seeds`) into
//! `DIR/TARGET/seed-N`, the corpus a fuzzing run starts from.

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for (name, _) in ramrod::fuzzing::TARGETS {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        for (i, seed) in ramrod::fuzzing::seeds(name).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}
