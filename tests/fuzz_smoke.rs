//! The fuzz smoke (issue 9): the same target functions as `fuzz/` (this file includes them),
//! on stable, over the whole seed corpus and a seeded set of mutations of it: bit flips,
//! length fields overwritten with huge values, truncations, spliced ranges. Bounded
//! (`MUTATIONS_PER_TARGET` inputs per target, a few seconds); a panic fails the test, and an
//! allocation by a hostile length would abort it. The real, coverage-guided runs are
//! `cargo +nightly fuzz run <target>` (fuzz/README.md).

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutated inputs run per target.
const MUTATIONS_PER_TARGET: usize = 10_000;
/// Fixed, so a failure reproduces; change it to explore other inputs.
const SEED: u64 = 0x5eed_0009;

/// Values written over 1, 2, 4 or 5 bytes: the counts and lengths an attacker would send.
const HOSTILE_INT32: [u32; 6] = [
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000,
    0x0100_0000,
    0xffff,
    0x7fff,
];
const HOSTILE_VARINTS: [[u8; 5]; 3] = [
    [0xff, 0xff, 0xff, 0xff, 0x0f],
    [0xff, 0xff, 0xff, 0xff, 0x8f],
    [0x80, 0x80, 0x80, 0x80, 0x08],
];

#[test]
fn decode_request_survives_corpus_and_mutations() {
    run_target("decode_request", targets::decode_request, 40);
}

#[test]
fn produce_validate_survives_corpus_and_mutations() {
    run_target("produce_validate", targets::produce_validate, 10);
}

fn run_target(name: &str, target: fn(&[u8]), seeds_min: usize) {
    let seeds = corpus(name);
    assert!(
        seeds.len() >= seeds_min,
        "fuzz/corpus/{name} holds {} inputs, expected at least {seeds_min}",
        seeds.len()
    );
    for seed in &seeds {
        target(seed);
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    for _ in 0..MUTATIONS_PER_TARGET {
        let base = &seeds[rng.gen_range(0..seeds.len())];
        let input = mutate(&mut rng, base, &seeds);
        target(&input);
    }
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .collect()
}

/// One to four random mutations of `base`.
fn mutate(rng: &mut StdRng, base: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if data.is_empty() {
            data.push(rng.gen());
        }
        let at = rng.gen_range(0..data.len());
        match rng.gen_range(0..7) {
            0 => data[at] ^= 1 << rng.gen_range(0..8),
            1 => data[at] = rng.gen(),
            2 => {
                let value = HOSTILE_INT32[rng.gen_range(0..HOSTILE_INT32.len())].to_be_bytes();
                let width = [1, 2, 4][rng.gen_range(0..3)];
                overwrite(&mut data, at, &value[4 - width..]);
            }
            3 => {
                let varint = HOSTILE_VARINTS[rng.gen_range(0..HOSTILE_VARINTS.len())];
                overwrite(&mut data, at, &varint);
            }
            4 => data.truncate(at),
            5 => {
                // Splice in a range of another seed (or of this one).
                let other = &seeds[rng.gen_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.gen_range(0..other.len());
                    let to = rng.gen_range(from..=other.len().min(from + 64));
                    data.splice(at..at, other[from..to].iter().copied());
                }
            }
            _ => {
                let end = rng.gen_range(at..=data.len().min(at + 16));
                data.drain(at..end);
            }
        }
    }
    data
}

fn overwrite(data: &mut [u8], at: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(slot) = data.get_mut(at + i) {
            *slot = *b;
        }
    }
}
