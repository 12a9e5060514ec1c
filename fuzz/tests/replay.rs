//! Runs every fuzz target body over its seed corpus (`fuzz/seeds/<target>`) and the
//! recorded crash inputs (`fuzz/regressions/<target>`) with plain `cargo test` (no nightly,
//! no libFuzzer), then over a bounded number of random mutations of those inputs. This
//! keeps the targets compiling and the found crashes fixed.
//!
//!   cd fuzz && cargo test --no-default-features --test replay   # (scripts/test runs this)
//!   OXCOL_FUZZ_MUTATIONS=200000 cargo test --release --no-default-features --test replay   # a longer random run

use std::path::Path;

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("reads a corpus file"))
        .collect()
}

/// The shared deterministic generator, with a `below` that accepts 0.
struct Rng(oxcol_core::testdata::XorShift64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            1 if !data.is_empty() => {
                let at = rng.below(data.len());
                data.truncate(at);
            }
            2 => {
                let at = rng.below(data.len() + 1);
                data.insert(at, rng.next() as u8);
            }
            3 if data.len() > 1 => {
                let from = rng.below(data.len());
                let to = (from + 1 + rng.below(16)).min(data.len());
                data.drain(from..to);
            }
            _ if !data.is_empty() => {
                // Duplicate a slice (repeats fields, nests messages).
                let from = rng.below(data.len());
                let to = (from + 1 + rng.below(64)).min(data.len());
                let piece = data[from..to].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, piece);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

#[test]
fn every_target_survives_its_corpus_its_regressions_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mutations: usize = std::env::var("OXCOL_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    for (name, body) in oxcol_fuzz::TARGETS {
        let mut seeds = inputs(&root.join("seeds").join(name));
        let regressions = inputs(&root.join("regressions").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seed");
        for input in seeds.iter().chain(&regressions) {
            body(input);
        }
        seeds.extend(regressions);
        let mut rng = Rng(oxcol_core::testdata::XorShift64(
            0x9e37_79b9_7f4a_7c15 ^ name.len() as u64,
        ));
        for _ in 0..mutations {
            let seed = &seeds[rng.below(seeds.len())];
            body(&mutate(&mut rng, seed));
        }
    }
}
