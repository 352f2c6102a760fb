use std::io::{Cursor, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::json;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::*;

/// Keys and shapes of the decider state dict, in the fixtures' insertion order.
const DECIDER_SHAPES: [(&str, &[usize]); 29] = [
    ("threshold", &[]),
    ("logits_projection.weight", &[64, 100]),
    ("logits_projection.bias", &[64]),
    ("combined_projection.weight", &[32, 256]),
    ("combined_projection.bias", &[32]),
    ("backbone.input_projection.weight", &[32, 32]),
    ("backbone.input_projection.bias", &[32]),
    ("backbone.blocks.0.layer_norm.weight", &[32]),
    ("backbone.blocks.0.layer_norm.bias", &[32]),
    ("backbone.blocks.0.mlp.0.weight", &[64, 32]),
    ("backbone.blocks.0.mlp.0.bias", &[64]),
    ("backbone.blocks.0.mlp.3.weight", &[32, 64]),
    ("backbone.blocks.0.mlp.3.bias", &[32]),
    ("backbone.blocks.1.layer_norm.weight", &[32]),
    ("backbone.blocks.1.layer_norm.bias", &[32]),
    ("backbone.blocks.1.mlp.0.weight", &[64, 32]),
    ("backbone.blocks.1.mlp.0.bias", &[64]),
    ("backbone.blocks.1.mlp.3.weight", &[32, 64]),
    ("backbone.blocks.1.mlp.3.bias", &[32]),
    ("backbone.blocks.2.layer_norm.weight", &[32]),
    ("backbone.blocks.2.layer_norm.bias", &[32]),
    ("backbone.blocks.2.mlp.0.weight", &[64, 32]),
    ("backbone.blocks.2.mlp.0.bias", &[64]),
    ("backbone.blocks.2.mlp.3.weight", &[32, 64]),
    ("backbone.blocks.2.mlp.3.bias", &[32]),
    ("backbone.output_layer.0.weight", &[32]),
    ("backbone.output_layer.0.bias", &[32]),
    ("backbone.output_layer.1.weight", &[1, 32]),
    ("backbone.output_layer.1.bias", &[1]),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("iter_decider.bin")
}

fn parse(bytes: &[u8]) -> Result<TorchCheckpoint> {
    TorchCheckpoint::from_bytes(bytes, Path::new("test.bin"))
}

/// The reason of the `MalformedFile` error that `bytes` must produce.
fn malformed(bytes: &[u8]) -> String {
    match parse(bytes) {
        Err(Error::MalformedFile { reason, .. }) => reason,
        other => panic!("expected MalformedFile, got {other:?}"),
    }
}

/// A zip of stored (uncompressed) entries.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for (name, data) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// The entries of a fixture archive, to rebuild it with changes.
fn fixture_entries(name: &str) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|index| {
            let mut file = archive.by_index(index).unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            (file.name().to_owned(), data)
        })
        .collect()
}

/// Builds protocol-2 pickles opcode by opcode.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Self(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(self, text: &str) -> Self {
        let len = u32::try_from(text.len()).unwrap().to_le_bytes();
        self.op(b"X").op(&len).op(text.as_bytes())
    }
    fn int(self, value: u8) -> Self {
        self.op(&[b'K', value])
    }
    fn ints(self, values: &[u8]) -> Self {
        values
            .iter()
            .fold(self.op(b"("), |pickle, &value| pickle.int(value))
            .op(b"t")
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn finish(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// `{"class": "T", "init_args": {}, "state_dict": {"w": view of storage "0"}}`.
fn one_tensor_pickle(dtype: &str, numel: u8, offset: u8, shape: &[u8], stride: &[u8]) -> Vec<u8> {
    Pickle::new()
        .op(b"}(")
        .str("class")
        .str("T")
        .str("init_args")
        .op(b"}")
        .str("state_dict")
        .op(b"}(")
        .str("w")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"((")
        .str("storage")
        .global("torch", &format!("{dtype}Storage"))
        .str("0")
        .str("cpu")
        .int(numel)
        .op(b"tQ")
        .int(offset)
        .ints(shape)
        .ints(stride)
        .op(b"\x89")
        .global("collections", "OrderedDict")
        .op(b")RtRuu")
        .finish()
}

/// An archive whose storage "0" holds the f32 values 0, 1, 2, ... `elements - 1`.
fn one_tensor_archive(pickle: &[u8], elements: u8) -> Vec<u8> {
    let storage: Vec<u8> = (0..elements)
        .flat_map(|i| f32::from(i).to_le_bytes())
        .collect();
    zip_of(&[
        ("a/data.pkl", pickle),
        ("a/byteorder", b"little"),
        ("a/data/0", &storage),
    ])
}

/// Wraps `init_args` pickle opcodes (which must leave one value) in a checkpoint.
fn init_args_pickle(init_args: Pickle) -> Vec<u8> {
    let head = Pickle::new()
        .op(b"}(")
        .str("class")
        .str("T")
        .str("init_args");
    let tail = Pickle(Vec::new()).str("state_dict").op(b"}u").finish();
    [head.0, init_args.0, tail].concat()
}

/// Elements `range` of tensor `name`, as f64 so that exact bf16 values can be
/// written in full.
fn widened(checkpoint: &TorchCheckpoint, name: &str, range: Range<usize>) -> Vec<f64> {
    let tensor = checkpoint.get(name).unwrap();
    tensor.data[range]
        .iter()
        .map(|&value| f64::from(value))
        .collect()
}

fn assert_shapes(checkpoint: &TorchCheckpoint) {
    let shapes: Vec<(&str, &[usize])> = checkpoint
        .state_dict
        .iter()
        .map(|(name, tensor)| (name.as_str(), tensor.shape.as_slice()))
        .collect();
    assert_eq!(shapes, DECIDER_SHAPES);
    for (name, tensor) in &checkpoint.state_dict {
        assert_eq!(
            tensor.data.len(),
            tensor.shape.iter().product::<usize>(),
            "{name}"
        );
    }
}

#[test]
fn reads_tiny_d2_a() {
    let checkpoint = TorchCheckpoint::read(&fixture("tiny-d2-a")).unwrap();
    assert_eq!(checkpoint.class, "MLPIterDecider");
    let init_args = json!({"topk": 100, "hidden_states_size": 64,
        "hidden_states_layer_nums": [0, 2, 3], "hidden_dims": [32, 32, 32],
        "expansion_factor": 2, "dropout_rate": 0.0, "normalize_input": false,
        "threshold": 0.1865234375, "max_iter": 2});
    assert_eq!(checkpoint.init_args, init_args);
    assert_shapes(&checkpoint);
    // Expected values: the raw bf16 entries widened in Python.
    let values = |name, range| widened(&checkpoint, name, range);
    assert_eq!(values("threshold", 0..1), [0.1865234375]);
    let logits = values("logits_projection.weight", 0..6400);
    assert_eq!(logits[..3], [-0.09765625, 0.07421875, 0.01409912109375]);
    assert_eq!(logits[6399], -0.07177734375);
    // Row 5, column 7.
    assert_eq!(
        values("combined_projection.weight", 1287..1288),
        [-0.05908203125]
    );
    assert_eq!(
        values("backbone.output_layer.1.weight", 0..2),
        [-3.8125, -3.046875]
    );
    assert_eq!(values("backbone.output_layer.1.bias", 0..1), [0.0]);
    assert!(checkpoint.get("no.such.tensor").is_none());
}

#[test]
fn reads_tiny_d3_a() {
    let checkpoint = TorchCheckpoint::read(&fixture("tiny-d3-a")).unwrap();
    assert_eq!(checkpoint.class, "MLPIterDecider");
    let init_args = json!({"topk": 100, "hidden_states_size": 64,
        "hidden_states_layer_nums": [0, 2, 3], "hidden_dims": [32, 32, 32],
        "expansion_factor": 2, "dropout_rate": 0.0, "normalize_input": false,
        "threshold": 0.58203125, "max_iter": 3});
    assert_eq!(checkpoint.init_args, init_args);
    assert_shapes(&checkpoint);
    let values = |name, range| widened(&checkpoint, name, range);
    assert_eq!(values("threshold", 0..1), [0.58203125]);
    let logits = values("logits_projection.weight", 0..6400);
    assert_eq!(logits[..3], [-0.03515625, 0.01483154296875, -0.07421875]);
    assert_eq!(logits[6399], 0.0869140625);
    assert_eq!(
        values("backbone.output_layer.1.weight", 0..2),
        [-2.15625, 2.765625]
    );
}

#[test]
fn gathers_strided_views_and_scalars() {
    // Storage 0..6, offset 1, shape [2, 2], column-major strides: a transpose.
    let pickle = one_tensor_pickle("Float", 6, 1, &[2, 2], &[1, 2]);
    let checkpoint = parse(&one_tensor_archive(&pickle, 6)).unwrap();
    assert_eq!(checkpoint.class, "T");
    assert_eq!(checkpoint.init_args, json!({}));
    let expected = TorchTensor {
        shape: vec![2, 2],
        data: vec![1.0, 3.0, 2.0, 4.0],
    };
    assert_eq!(checkpoint.get("w"), Some(&expected));

    let pickle = one_tensor_pickle("Float", 6, 5, &[], &[]);
    let checkpoint = parse(&one_tensor_archive(&pickle, 6)).unwrap();
    assert_eq!(
        checkpoint.get("w"),
        Some(&TorchTensor {
            shape: vec![],
            data: vec![5.0]
        })
    );

    let pickle = one_tensor_pickle("Float", 6, 0, &[3, 0], &[1, 1]);
    let checkpoint = parse(&one_tensor_archive(&pickle, 6)).unwrap();
    assert_eq!(
        checkpoint.get("w"),
        Some(&TorchTensor {
            shape: vec![3, 0],
            data: vec![]
        })
    );
}

#[test]
fn rejects_views_outside_their_storage_or_budget() {
    let pickle = one_tensor_pickle("Float", 6, 5, &[2], &[1]);
    assert!(malformed(&one_tensor_archive(&pickle, 6)).contains("reaches past its storage"));
    let pickle = one_tensor_pickle("Float", 6, 0, &[2, 2], &[255, 1]);
    assert!(malformed(&one_tensor_archive(&pickle, 6)).contains("reaches past its storage"));
    // Zero strides repeat one stored element 255^3 times: more than the archive's bytes.
    let pickle = one_tensor_pickle("Float", 6, 0, &[255, 255, 255], &[0, 0, 0]);
    let reason = malformed(&one_tensor_archive(&pickle, 6));
    assert!(
        reason.contains("more elements than the archive has bytes"),
        "{reason}"
    );
}

#[test]
fn rejects_storage_numel_larger_than_its_entry() {
    let pickle = one_tensor_pickle("Float", 200, 0, &[200], &[1]);
    assert!(malformed(&one_tensor_archive(&pickle, 6)).contains("declares 200"));
}

#[test]
fn rejects_unsupported_dtype() {
    let pickle = one_tensor_pickle("ComplexFloat", 3, 0, &[3], &[1]);
    match parse(&one_tensor_archive(&pickle, 6)) {
        Err(Error::UnsupportedDtype { name, dtype, .. }) => {
            assert_eq!((name.as_str(), dtype.as_str()), ("w", "ComplexFloat"));
        }
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
}

#[test]
fn rejects_missing_data_entry() {
    let pickle = one_tensor_pickle("Float", 6, 0, &[6], &[1]);
    assert!(malformed(&zip_of(&[("a/data.pkl", &pickle)])).contains("`a/data/0`: missing"));
}

#[test]
fn rejects_disallowed_globals() {
    let cases = [
        (Pickle::new().global("os", "system"), "`os.system`"),
        (
            Pickle::new().str("builtins").str("eval").op(b"\x93"),
            "`builtins.eval`",
        ),
        (Pickle::new().global("torch", "load"), "`torch.load`"),
        (Pickle::new().global("torch", "Storage"), "`torch.Storage`"),
    ];
    for (pickle, name) in cases {
        let pickle = pickle.str("echo pwned").op(b"\x85R").finish();
        let reason = malformed(&zip_of(&[("a/data.pkl", &pickle)]));
        assert!(reason.contains(name), "{reason}");
    }
    // An allowed class is still not an allowed callable.
    let pickle = Pickle::new()
        .global("torch", "FloatStorage")
        .op(b")R")
        .finish();
    assert!(malformed(&zip_of(&[("a/data.pkl", &pickle)])).contains("REDUCE may only"));
}

#[test]
fn rejects_unknown_opcodes_and_broken_pickles() {
    let cases: [(&[u8], &str); 10] = [
        (b"\x80\x02\xff", "unsupported pickle opcode 0xff"),
        (
            b"\x80\x02i__builtin__\neval\n",
            "unsupported pickle opcode 0x69",
        ),
        (b"\x80\x02P1\n.", "unsupported pickle opcode 0x50"),
        (b"\x80\x06}.", "unsupported pickle protocol 6"),
        (b"\x80\x02h\x05.", "memo entry 5 is not set"),
        (b"\x80\x02(.", "stack underflow"),
        (b"\x80\x02t.", "no MARK"),
        (b"\x80\x02X\xff\xff\xff\xff", "unexpected end of pickle"),
        (
            b"\x80\x02\x8a\x09\x01\x01\x01\x01\x01\x01\x01\x01\x01.",
            "does not fit in 64 bits",
        ),
        (b"\x80\x02K\x01.", "top-level object is not a dict"),
    ];
    for (pickle, expected) in cases {
        let reason = malformed(&zip_of(&[("a/data.pkl", pickle)]));
        assert!(reason.contains(expected), "{reason}");
    }
}

#[test]
fn bounds_recursive_and_exponential_init_args() {
    // A list that contains itself.
    let pickle = init_args_pickle(Pickle(Vec::new()).op(b"]q\x00h\x00a"));
    assert!(malformed(&zip_of(&[("a/data.pkl", &pickle)])).contains("too deeply or too large"));
    // x0 = [], x(i+1) = (xi, xi): 2^40 leaves from 200 bytes.
    let doubling = (0..40u8).fold(Pickle(Vec::new()).op(b"]q\x00"), |pickle, level| {
        pickle.op(&[b'h', level, 0x86, b'q', level + 1])
    });
    let pickle = init_args_pickle(doubling);
    assert!(malformed(&zip_of(&[("a/data.pkl", &pickle)])).contains("too deeply or too large"));
}

#[test]
fn rejects_non_zip_empty_and_truncated_archives() {
    assert!(malformed(b"").contains("not a readable zip archive"));
    assert!(malformed(b"\x80\x02}q\x00.not a zip").contains("not a readable zip archive"));
    let bytes = std::fs::read(fixture("tiny-d2-a")).unwrap();
    let len = bytes.len();
    for cut in [
        1,
        4,
        30,
        100,
        2000,
        3100,
        40_000,
        len - 200,
        len - 22,
        len - 1,
    ] {
        malformed(&bytes[..cut]);
    }
}

#[test]
fn rejects_compressed_entries() {
    let pickle = one_tensor_pickle("Float", 6, 0, &[6], &[1]);
    let mut bytes = one_tensor_archive(&pickle, 6);
    // Mark data.pkl (the first entry) as deflated in its local and central headers.
    bytes[8] = 8;
    let central = bytes
        .windows(4)
        .position(|window| window == b"PK\x01\x02")
        .unwrap();
    bytes[central + 10] = 8;
    malformed(&bytes);
}

#[test]
fn truncated_or_corrupted_fixture_pickles_never_panic() {
    let entries = fixture_entries("tiny-d2-a");
    let pickle = entries
        .iter()
        .find(|(name, _)| name.ends_with("/data.pkl"))
        .unwrap()
        .1
        .clone();
    for cut in 0..pickle.len() {
        assert!(parse(&zip_of(&[("a/data.pkl", &pickle[..cut])])).is_err());
    }
    for position in 0..pickle.len() {
        let mut corrupted = pickle.clone();
        corrupted[position] ^= 0xff;
        let rebuilt: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(name, data)| {
                let data = if name.ends_with("/data.pkl") {
                    &corrupted
                } else {
                    data
                };
                (name.as_str(), data.as_slice())
            })
            .collect();
        // Either outcome is fine; returning at all is the point.
        let _ = parse(&zip_of(&rebuilt));
    }
}
