//! The f16 and 8-bit KV caches (`--kv f16|q8`): how closely they follow the
//! f32 cache on every fixture case, and what they save.

mod common;

use common::check::Agreement;
use common::{fixture_dir, fixture_names, tokenizer_path};
use tah_core::{ChunkOptions, KeepLogits, KvPrecision, LoadOptions, TahModel};

fn load(name: &str, kv_precision: KvPrecision) -> TahModel {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_path()),
        kv_precision,
        ..Default::default()
    };
    TahModel::load(&fixture_dir().join(name), &options).unwrap()
}

fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir().join(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Agreement with the f32 cache over every fixture, printed.
fn agreement(precision: KvPrecision) -> (f64, f64) {
    let mut total = Agreement::default();
    for name in fixture_names() {
        total.add(
            &load(&name, KvPrecision::F32),
            &load(&name, precision),
            &expected(&name),
        );
    }
    total.report(&format!("KV {precision:?} vs f32"))
}

#[test]
fn f16_cache_follows_f32() {
    let (top1, decisions) = agreement(KvPrecision::F16);
    assert!(top1 >= 99.0 && decisions >= 99.0, "{top1} {decisions}");
}

#[test]
fn q8_cache_follows_f32() {
    // Floors a little under what was measured, so a regression shows.
    let (top1, decisions) = agreement(KvPrecision::Q8);
    assert!(top1 >= 95.0 && decisions >= 97.0, "{top1} {decisions}");
}

#[test]
fn smaller_caches_hold_the_same_entries_in_less_memory() {
    let name = &fixture_names()[0];
    let ids: Vec<u32> = (100..140).collect();
    let mut bytes = Vec::new();
    for precision in [KvPrecision::F32, KvPrecision::F16, KvPrecision::Q8] {
        let model = load(name, precision);
        let mut cache = model.new_cache();
        let opts = ChunkOptions {
            policy: Default::default(),
            keep: KeepLogits::Last,
            max_hard: None,
            cancel: None,
            probe_decider: false,
        };
        model.forward_chunk(&ids, &mut cache, &opts).unwrap();
        assert_eq!(cache.len(), ids.len());
        println!(
            "{name}: {} tokens, KV {precision:?} = {} bytes",
            ids.len(),
            cache.bytes()
        );
        bytes.push(cache.bytes());
    }
    let head_dim = load(name, KvPrecision::F32).config().head_dim;
    assert_eq!(bytes[1] * 2, bytes[0]);
    // q8: one byte per value plus a 4-byte scale per head vector.
    assert_eq!(bytes[2] * 4 * head_dim, bytes[0] * (head_dim + 4));
}
