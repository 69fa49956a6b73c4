//! Writes the log-mining benchmark inputs: `OUTDIR/<System>.log` with 100 000 messages each
//! (1 000 000 in all), the same data the criterion bench `logs` measures, for the peer scripts
//! and the end-to-end timing of `vigil logs parse`.

use std::io::Write;

use vigil_benches::logs::{generate, loghub_contents, SYSTEMS};

/// Messages per system.
const PER_SYSTEM: usize = 100_000;

fn main() -> Result<(), String> {
    let dir = std::env::args().nth(1).ok_or("usage: gen_logs OUTDIR")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
    for (i, system) in SYSTEMS.iter().enumerate() {
        let lines = generate(&loghub_contents(system)?, PER_SYSTEM, 42 + i as u64);
        let path = format!("{dir}/{system}.log");
        let f = std::fs::File::create(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut w = std::io::BufWriter::new(f);
        for l in &lines {
            writeln!(w, "{l}").map_err(|e| format!("{path}: {e}"))?;
        }
        w.flush().map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}
